// ImageNet-style folder dataset: root/<class>/<image>, class index = position of the folder
// name in sorted order; .jpg/.jpeg/.png files (any case).

import Formats
import Foundation

public struct ImageFolder: Sendable {
    public struct Sample: Equatable, Sendable {
        /// Path relative to the root ("class/file.jpg").
        public var relativePath: String
        public var label: Int
    }

    public static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    public let root: String
    public let classes: [String]
    public let samples: [Sample]
    public var count: Int { samples.count }

    /// Scans the folder. Throws if it is missing, has no class folders, or a class folder has
    /// no image files.
    public init(root: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir) else { throw PipelineError.missingFile(root) }
        guard isDir.boolValue else { throw PipelineError.dataset("The dataset root \(root) is a file, not a folder of class folders.") }
        let entries = try fm.contentsOfDirectory(atPath: root).filter { !$0.hasPrefix(".") }
        let classes = entries.filter { name in
            var d: ObjCBool = false
            return fm.fileExists(atPath: root + "/" + name, isDirectory: &d) && d.boolValue
        }.sorted()
        guard !classes.isEmpty else {
            throw PipelineError.dataset("The dataset root \(root) has no class folders (expected root/<class>/<image>).")
        }
        var samples: [Sample] = []
        for (label, name) in classes.enumerated() {
            let files = try Self.imageFiles(in: root + "/" + name)
            guard !files.isEmpty else {
                throw PipelineError.dataset("The class folder \(root)/\(name) contains no .jpg, .jpeg or .png files.")
            }
            samples += files.map { Sample(relativePath: name + "/" + $0, label: label) }
        }
        self.root = root
        self.classes = classes
        self.samples = samples
    }

    /// Image files under a class folder (recursively, as torchvision does), sorted. A class
    /// folder that is a symbolic link to a folder is followed (the paths keep the link's name).
    static func imageFiles(in folder: String) throws -> [String] {
        var target = folder
        if let resolved = realpath(folder, nil) { target = String(cString: resolved); free(resolved) }
        guard let walker = FileManager.default.enumerator(atPath: target) else { return [] }
        var out: [String] = []
        while let rel = walker.nextObject() as? String {
            let ext = (rel as NSString).pathExtension.lowercased()
            if extensions.contains(ext), !(rel as NSString).lastPathComponent.hasPrefix(".") { out.append(rel) }
        }
        return out.sorted()
    }

    public func path(_ i: Int) -> String { root + "/" + samples[i].relativePath }

    /// Decodes sample i.
    public func image(_ i: Int) throws -> RGBImage { try ImageIO.decode(path: path(i)) }
}

/// Tracks corrupt images met while iterating: skipped with a warning, or fatal in strict mode.
public final class CorruptImagePolicy: @unchecked Sendable {
    public let strict: Bool
    public private(set) var skipped: [String] = []
    private let lock = NSLock()

    public init(strict: Bool) { self.strict = strict }

    /// Decodes `path`, returning nil (and warning) for a corrupt image unless strict.
    public func decode(path: String) throws -> RGBImage? {
        do {
            return try ImageIO.decode(path: path)
        } catch let error as PipelineError {
            if strict { throw error }
            lock.lock(); skipped.append(path); lock.unlock()
            warn("skipping \(error.description)")
            return nil
        }
    }

    public var skippedCount: Int { lock.lock(); defer { lock.unlock() }; return skipped.count }
}
