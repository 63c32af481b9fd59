import Foundation
import Formats

/// The classes of a class-conditional model and how the command line may name them: by index, by
/// name (case, `_` and `-` ignored), or, for ImageNet classes, by WordNet id or any WordNet lemma.
public struct ClassVocabulary: Sendable {
    /// Display name of each class, index = label.
    public let names: [String]
    /// WordNet id of each class, when the classes are ImageNet's.
    public let wnids: [String]?
    /// Accepted spellings of each class, normalized.
    private let spellings: [[String]]

    /// The vocabulary of a model with `count` classes whose config records `recorded` names (empty
    /// when it records none). Recorded names win; recorded WordNet ids (an ImageNet folder's class
    /// names) and 1000 classes without names take ImageNet's names; otherwise "class i".
    public init(count: Int, recorded: [String]) {
        let imagenet = Dictionary(uniqueKeysWithValues: ImageNetClasses.entries.map { ($0.wnid, $0) })
        if recorded.count == count, count > 0, recorded.allSatisfy({ imagenet[$0] != nil }) {
            self.init(entries: recorded.map { imagenet[$0]! })
        } else if recorded.count == count, count > 0 {
            self.init(names: recorded)
        } else if count == ImageNetClasses.count {
            self.init(entries: ImageNetClasses.entries)
        } else {
            self.init(names: (0..<max(0, count)).map { "class \($0)" })
        }
    }

    private init(names: [String]) {
        self.names = names
        wnids = nil
        spellings = names.map { [Self.normalize($0)] }
    }

    private init(entries: [ImageNetClasses.Entry]) {
        names = entries.map(\.name)
        wnids = entries.map(\.wnid)
        spellings = entries.map { e in [e.wnid.lowercased()] + e.lemmas.map(Self.normalize) }
    }

    public var count: Int { names.count }

    /// "golden retriever (207, n02099601)" or "Sneaker (7)".
    public func describe(_ i: Int) -> String {
        if let wnids { return "\(names[i]) (\(i), \(wnids[i]))" }
        return "\(names[i]) (\(i))"
    }

    /// Lower case, `_` and `-` as spaces, runs of spaces collapsed.
    static func normalize(_ s: String) -> String {
        s.lowercased().map { $0 == "_" || $0 == "-" ? " " : $0 }
            .split(separator: " ", omittingEmptySubsequences: true).map { String($0) }.joined(separator: " ")
    }

    /// The class `spec` names: an index, a name or lemma, or a WordNet id.
    public func resolve(_ spec: String) throws -> Int {
        let spec = spec.trimmingCharacters(in: .whitespaces)
        if let i = Int(spec) {
            guard i >= 0 && i < count else {
                throw PipelineError.invalidArgument("Class \(i) is outside 0..<\(count).")
            }
            return i
        }
        let key = Self.normalize(spec)
        // A WordNet id or a display name first; another lemma only when neither matches (so
        // "crane" is ambiguous between the bird and the machine, never a third class's lemma).
        var matches = (0..<count).filter { wnids?[$0].lowercased() == key || Self.normalize(names[$0]) == key }
        if matches.isEmpty { matches = (0..<count).filter { spellings[$0].contains(key) } }
        if matches.count == 1 { return matches[0] }
        if matches.count > 1 {
            throw PipelineError.invalidArgument("Class '\(spec)' is ambiguous: \(matches.map(describe).joined(separator: ", ")); give its index\(wnids != nil ? " or WordNet id" : "").")
        }
        let close = suggestions(for: key)
        let hint = close.isEmpty ? "" : " Did you mean \(close.map(describe).joined(separator: ", "))?"
        let known = count <= 20
            ? " Known: \(names.joined(separator: ", "))."
            : " Classes are indices 0..<\(count)\(wnids != nil ? ", WordNet ids (n02099601)" : "") or names; `gen info <sit>` lists them."
        throw PipelineError.invalidArgument("Unknown class '\(spec)'.\(hint)\(known)")
    }

    /// Up to `limit` classes whose spellings are closest to `key` (edit distance at most a third of
    /// the longer string, or containing it as a word).
    public func suggestions(for key: String, limit: Int = 3) -> [Int] {
        let key = Self.normalize(key)
        guard !key.isEmpty else { return [] }
        var scored: [(Int, Int)] = []
        for i in 0..<count {
            var best = Int.max
            for s in spellings[i] {
                let d = Self.editDistance(key, s)
                if d <= max(1, max(key.count, s.count) / 3) { best = min(best, d) }
                if key.count >= 3 && s.split(separator: " ").contains(where: { $0 == key }) { best = min(best, 1) }
            }
            if best != .max { scored.append((best, i)) }
        }
        return scored.sorted { $0 < $1 }.prefix(limit).map(\.1)
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
