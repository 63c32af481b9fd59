// Minimal PNG charts for loss curves and evaluation plots: line plots with axes, tick labels
// (bitmap font), a title and a legend; and bar charts.

import Foundation

public typealias RGB = (UInt8, UInt8, UInt8)

/// Distinct series colors (tab10-like).
public let plotPalette: [RGB] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]

/// About `count` round tick values covering [lo, hi].
func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let raw = (hi - lo) / Double(max(count, 1))
    let mag = pow(10, floor(log10(raw)))
    let mantissa = [1.0, 2, 2.5, 5, 10].first { $0 * mag >= raw } ?? 10
    let step = mantissa * mag
    // Values as k * mantissa / 10^d (exact division) so ticks print as 0.6, not 0.6000000000000001.
    let inverse = mag < 1 ? (1 / mag).rounded() : 1
    func value(_ k: Double) -> Double { mag < 1 ? k * mantissa / inverse : k * step }
    var ticks: [Double] = []
    var k = ceil(lo / step - 1e-9)
    while value(k) <= hi + step * 1e-9 { ticks.append(value(k) == 0 ? 0 : value(k)); k += 1 }
    return ticks
}

/// Ticks for a log10 axis spanning [lo, hi] (in log10 units): 1-2-5 per decade, or whole
/// decades when that is too many, or plain ticks when the range is under one step.
func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let decades = Int(floor(lo))...Int(ceil(hi))
    for mantissas in [[1.0, 2, 5], [1.0]] {
        let t = decades.flatMap { d in mantissas.map { log10($0) + Double(d) } }.filter { $0 >= lo && $0 <= hi }
        if t.count >= 2 && t.count <= 8 { return t }
        if t.count > 8 { continue }
        // Under one 1-2-5 step: round values (0.98, 0.99, 1) placed on the log axis.
        return niceTicks(pow(10, lo), pow(10, hi)).filter { $0 > 0 }.map(log10)
    }
    let step = max(1, Int(ceil(Double(decades.count) / 8)))
    return decades.filter { $0 % step == 0 }.map(Double.init).filter { $0 >= lo && $0 <= hi }
}

/// Short tick text ("0.25", "1.5k", "2e-05").
func tickLabel(_ v: Double) -> String {
    let a = abs(v)
    if a == 0 { return "0" }
    if a >= 1e5 || a < 1e-3 { return String(format: "%.0e", v) }
    if a >= 1000 { return a.truncatingRemainder(dividingBy: 1000) == 0 ? "\(Int(v / 1000))k" : String(format: "%.1fk", v / 1000) }
    var s = String(format: "%.3f", v)
    while s.contains(".") && (s.hasSuffix("0") || s.hasSuffix(".")) { s.removeLast() }
    return s
}

public struct LinePlot {
    /// The legend column right of the plot: a 10-pixel swatch, a gap, then the longest name,
    /// at most a third of the image.
    static func legendWidth(names: [String], plotWidth width: Int) -> Int {
        min(width / 3, (names.map { BitmapFont.width($0) }.max() ?? 0) + legendTextOffset + 6)
    }
    /// Names are drawn this far right of the legend's left edge (swatch + gap).
    static let legendTextOffset = 24
    /// How many characters of a name fit in a legend of this width (names longer than that
    /// are cut).
    static func legendCharacters(legendWidth: Int) -> Int {
        max(1, (legendWidth - legendTextOffset + 1) / BitmapFont.advance)
    }

    public struct Series {
        public var name: String
        public var x: [Double]
        public var y: [Double]
        public init(name: String, x: [Double], y: [Double]) {
            precondition(x.count == y.count, "series \(name): x and y differ in length")
            self.name = name; self.x = x; self.y = y
        }
        public init(name: String, y: [Double]) { self.init(name: name, x: y.indices.map(Double.init), y: y) }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var width: Int
    public var height: Int
    /// Plot log10(y) (for losses); non-positive values are skipped.
    public var logY: Bool

    public init(title: String, xLabel: String = "", yLabel: String = "", series: [Series],
                width: Int = 640, height: Int = 400, logY: Bool = false) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
        self.width = width; self.height = height; self.logY = logY
    }

    /// Plot area margins: left, right, top, bottom.
    static let margins = (left: 62, right: 16, top: 24, bottom: 36)

    public func render() -> Canvas {
        var canvas = Canvas(width: width, height: height)
        let m = Self.margins
        // The legend sits right of the plot area, never over the data.
        let named = series.filter { !$0.name.isEmpty }
        let legendW = named.isEmpty ? 0 : LinePlot.legendWidth(names: named.map(\.name), plotWidth: width)
        let plotW = width - m.left - m.right - legendW, plotH = height - m.top - m.bottom
        canvas.text(title, x: max(2, (width - BitmapFont.width(title)) / 2), y: 8)
        let ty: (Double) -> Double? = { v in
            guard v.isFinite else { return nil }
            if logY { return v > 0 ? log10(v) : nil }
            return v
        }
        let xs = series.flatMap { $0.x }.filter(\.isFinite)
        let ys = series.flatMap { $0.y }.compactMap(ty)
        var (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1)
        var (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        if x1 <= x0 { x0 -= 0.5; x1 += 0.5 }
        if y1 <= y0 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        func px(_ x: Double) -> Int { m.left + Int(((x - x0) / (x1 - x0) * Double(plotW - 1)).rounded()) }
        func py(_ y: Double) -> Int { m.top + plotH - 1 - Int(((y - y0) / (y1 - y0) * Double(plotH - 1)).rounded()) }
        drawAxes(&canvas, plotW: plotW, plotH: plotH)
        for t in niceTicks(x0, x1) {
            let x = px(t)
            canvas.line(x, m.top + plotH, x, m.top + plotH + 3, (0, 0, 0))
            let s = tickLabel(t)
            canvas.text(s, x: x - BitmapFont.width(s) / 2, y: m.top + plotH + 6)
        }
        for t in logY ? logTicks(y0, y1) : niceTicks(y0, y1) {
            let y = py(t)
            canvas.line(m.left - 3, y, m.left - 1, y, (0, 0, 0))
            for gx in stride(from: m.left + 1, to: m.left + plotW, by: 4) { canvas.set(gx, y, (220, 220, 220)) }
            let s = logY ? tickLabel(pow(10, t)) : tickLabel(t)
            canvas.text(s, x: m.left - 5 - BitmapFont.width(s), y: y - 3)
        }
        if !xLabel.isEmpty { canvas.text(xLabel, x: m.left + (plotW - BitmapFont.width(xLabel)) / 2, y: height - 11) }
        if !yLabel.isEmpty { canvas.verticalText(yLabel, x: 3, y: m.top + (plotH + BitmapFont.width(yLabel)) / 2) }
        for (k, s) in series.enumerated() {
            let color = plotPalette[k % plotPalette.count]
            var previous: (Int, Int)?
            for (x, y) in zip(s.x, s.y) {
                guard x.isFinite, let yy = ty(y) else { previous = nil; continue }
                let p = (px(x), py(yy))
                if let q = previous { canvas.line(q.0, q.1, p.0, p.1, color, thickness: 2) } else { canvas.fill(x: p.0 - 1, y: p.1 - 1, width: 2, height: 2, color) }
                previous = p
            }
            if !s.name.isEmpty, let row = named.firstIndex(where: { $0.name == s.name }) {
                let lx = m.left + plotW + 10, ly = m.top + 4 + row * 13
                canvas.fill(x: lx, y: ly + 2, width: 10, height: 3, color)
                let maxChars = LinePlot.legendCharacters(legendWidth: legendW)
                canvas.text(s.name.count > maxChars ? String(s.name.prefix(maxChars)) : s.name, x: lx + 14, y: ly)
            }
        }
        return canvas
    }

    func drawAxes(_ canvas: inout Canvas, plotW: Int, plotH: Int) {
        let m = Self.margins
        canvas.line(m.left - 1, m.top, m.left - 1, m.top + plotH, (0, 0, 0))
        canvas.line(m.left - 1, m.top + plotH, m.left + plotW, m.top + plotH, (0, 0, 0))
    }

    public func writePNG(path: String) throws { try render().writePNG(path: path) }
}

public struct BarChart {
    public struct Series {
        public var name: String
        public var values: [Double]
        public init(name: String, values: [Double]) { self.name = name; self.values = values }
    }

    public var title: String
    public var yLabel: String
    /// One label per group; "\n" starts a second line.
    public var labels: [String]
    /// Bars of each group, side by side (a legend names them when there are several).
    public var series: [Series]
    public var width: Int
    public var height: Int

    public init(title: String, yLabel: String = "", labels: [String], values: [Double], width: Int = 640, height: Int = 400) {
        self.init(title: title, yLabel: yLabel, labels: labels, series: [Series(name: "", values: values)], width: width, height: height)
    }

    public init(title: String, yLabel: String = "", labels: [String], series: [Series], width: Int = 640, height: Int = 400) {
        precondition(series.allSatisfy { $0.values.count == labels.count }, "one value per label in every series")
        self.title = title; self.yLabel = yLabel; self.labels = labels; self.series = series
        self.width = width; self.height = height
    }

    public func render() -> Canvas {
        var canvas = Canvas(width: width, height: height)
        var m = LinePlot.margins
        let lines = labels.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        m.bottom += 11 * max(0, (lines.map(\.count).max() ?? 1) - 1)
        let named = series.filter { !$0.name.isEmpty }
        let legendW = named.count > 1 ? LinePlot.legendWidth(names: named.map(\.name), plotWidth: width) : 0
        let plotW = width - m.left - m.right - legendW, plotH = height - m.top - m.bottom
        canvas.text(title, x: max(2, (width - BitmapFont.width(title)) / 2), y: 8)
        let finite = series.flatMap(\.values).filter(\.isFinite)
        let y0 = min(0, finite.min() ?? 0)
        var y1 = max(0, finite.max() ?? 1)
        if y1 <= y0 { y1 = y0 + 1 }
        y1 += (y1 - y0) * 0.08
        func py(_ y: Double) -> Int { m.top + plotH - 1 - Int(((y - y0) / (y1 - y0) * Double(plotH - 1)).rounded()) }
        canvas.line(m.left - 1, m.top, m.left - 1, m.top + plotH, (0, 0, 0))
        canvas.line(m.left - 1, m.top + plotH, m.left + plotW, m.top + plotH, (0, 0, 0))
        for t in niceTicks(y0, y1) {
            let y = py(t)
            canvas.line(m.left - 3, y, m.left - 1, y, (0, 0, 0))
            for gx in stride(from: m.left + 1, to: m.left + plotW, by: 4) { canvas.set(gx, y, (220, 220, 220)) }
            let s = tickLabel(t)
            canvas.text(s, x: m.left - 5 - BitmapFont.width(s), y: y - 3)
        }
        if !yLabel.isEmpty { canvas.verticalText(yLabel, x: 3, y: m.top + (plotH + BitmapFont.width(yLabel)) / 2) }
        let n = max(labels.count, 1), k = max(series.count, 1)
        let slot = Double(plotW) / Double(n)
        let barW = max(1, Int(slot * 0.75) / k)
        for g in 0..<labels.count {
            let groupLeft = m.left + Int(Double(g) * slot + slot * 0.125)
            for (j, s) in series.enumerated() where s.values[g].isFinite {
                let v = s.values[g]
                let color = series.count > 1 ? plotPalette[j % plotPalette.count] : plotPalette[g % plotPalette.count]
                let left = groupLeft + j * barW
                let top = py(max(v, 0)), bottom = py(min(v, 0))
                canvas.fill(x: left, y: top, width: max(1, barW - 1), height: max(1, bottom - top + 1), color)
                let valueText = tickLabel(v)
                if BitmapFont.width(valueText) <= barW + 4 || series.count == 1 {
                    canvas.text(valueText, x: left + (barW - BitmapFont.width(valueText)) / 2, y: max(m.top, top - 11))
                }
            }
            let maxChars = max(1, Int(slot) / BitmapFont.advance)
            for (row, line) in lines[g].enumerated() {
                let shown = line.count > maxChars ? String(line.prefix(maxChars)) : line
                let center = m.left + Int(Double(g) * slot + slot / 2)
                canvas.text(shown, x: center - BitmapFont.width(shown) / 2, y: m.top + plotH + 6 + row * 11)
            }
        }
        for (row, s) in named.enumerated() where named.count > 1 {
            let j = series.firstIndex { $0.name == s.name } ?? row
            let lx = m.left + plotW + 10, ly = m.top + 4 + row * 13
            canvas.fill(x: lx, y: ly + 2, width: 10, height: 3, plotPalette[j % plotPalette.count])
            let maxChars = LinePlot.legendCharacters(legendWidth: legendW)
            canvas.text(s.name.count > maxChars ? String(s.name.prefix(maxChars)) : s.name, x: lx + 14, y: ly)
        }
        return canvas
    }

    public func writePNG(path: String) throws { try render().writePNG(path: path) }
}
