// A progress line on standard error: count/total, rate, ETA and extra fields (loss, ...).
// On a terminal it redraws in place with \r at most every 0.2 s; otherwise (logs, CI) it
// prints a full line every 10% or every 10 s, whichever comes first.

import Foundation

public final class ProgressBar {
    public let total: Int
    public let label: String
    public let unit: String
    public private(set) var count = 0
    private let isTTY: Bool
    private let start: Double
    private var lastDraw = -1.0
    private var lastTenth = -1
    private let output: (String) -> Void
    private var fields: [(String, String)] = []
    private var finished = false
    private var lastPrintedCount = -1

    /// - output: where text goes (standard error by default; tests capture it).
    /// - interactive: force TTY or log behaviour (default: whether stderr is a terminal).
    public init(total: Int, label: String = "", unit: String = "it", interactive: Bool? = nil,
                output: ((String) -> Void)? = nil) {
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.isTTY = interactive ?? (isatty(STDERR_FILENO) == 1)
        self.output = output ?? { FileHandle.standardError.write(Data($0.utf8)) }
        start = ProgressBar.now()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Advances by `n` and sets extra fields shown after the rate (e.g. [("loss", "0.123")]).
    public func update(by n: Int = 1, fields: [(String, String)]? = nil) {
        count += n
        if let f = fields { self.fields = f }
        let t = ProgressBar.now()
        if isTTY {
            if t - lastDraw >= 0.2 || count >= total {
                lastDraw = t
                output("\r" + line(elapsed: t - start, bar: true) + "\u{1B}[K")
            }
        } else {
            let tenth = total > 0 ? count * 10 / total : 0
            if tenth > lastTenth || t - lastDraw >= 10 {
                lastTenth = tenth
                lastDraw = t
                lastPrintedCount = count
                output(line(elapsed: t - start, bar: false) + "\n")
            }
        }
    }

    /// Prints the final state and ends the line.
    public func finish() {
        guard !finished else { return }
        finished = true
        if !isTTY && lastPrintedCount == count { return }
        let elapsed = ProgressBar.now() - start
        output((isTTY ? "\r" : "") + line(elapsed: elapsed, bar: isTTY) + (isTTY ? "\u{1B}[K\n" : "\n"))
    }

    /// The text of one progress line.
    func line(elapsed: Double, bar: Bool) -> String {
        var parts: [String] = []
        if !label.isEmpty { parts.append(label) }
        if bar && total > 0 {
            let width = 24
            let filled = min(width, count * width / total)
            parts.append("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]")
        }
        parts.append(total > 0 ? "\(count)/\(total)" : "\(count)")
        let rate = elapsed > 0 ? Double(count) / elapsed : 0
        parts.append(rate >= 1 || rate == 0 ? String(format: "%.2f %@/s", rate, unit) : String(format: "%.2f s/%@", 1 / rate, unit))
        if total > 0 && count < total && rate > 0 {
            parts.append("ETA " + ProgressBar.formatDuration(Double(total - count) / rate))
        } else {
            parts.append("elapsed " + ProgressBar.formatDuration(elapsed))
        }
        for (k, v) in fields { parts.append("\(k) \(v)") }
        return parts.joined(separator: "  ")
    }

    /// "42s", "3m05s", "2h03m".
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
