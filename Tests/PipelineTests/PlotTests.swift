import Foundation
@testable import Render
import XCTest

final class PlotTests: XCTestCase {
    /// Log-axis ticks are round numbers, also over less than one 1-2-5 step (a loss that moves
    /// from 1.003 to 0.975), where they used to read 0.977 / 0.989.
    func testLogTicksAreRound() {
        for (lo, hi) in [(0.975, 1.003), (0.25, 0.63), (0.0123, 0.0456), (0.1, 1000.0)] {
            let ticks = logTicks(log10(lo), log10(hi)).map { pow(10, $0) }
            XCTAssertGreaterThanOrEqual(ticks.count, 2, "\(lo)...\(hi)")
            for t in ticks {
                let label = tickLabel(t)
                let digits = label.filter(\.isNumber).drop(while: { $0 == "0" })
                XCTAssertLessThanOrEqual(digits.count, 3, "\(lo)...\(hi): tick \(label)")
            }
        }
    }

    /// Descenders: g, j, p, q, y reach below the baseline (rows 7-8), other letters do not.
    func testFontHasDescenders() {
        for ch in "gjpqy".unicodeScalars {
            XCTAssertTrue((0..<5).contains { BitmapFont.pixel(ch, x: $0, y: 8) }, "\(ch)")
        }
        for ch in "abcdefhiklmnorstuvwxz9".unicodeScalars {
            XCTAssertFalse((0..<5).contains { BitmapFont.pixel(ch, x: $0, y: 7) || BitmapFont.pixel(ch, x: $0, y: 8) }, "\(ch)")
        }
        // "g" and "9" no longer share a glyph.
        XCTAssertNotEqual((0..<5).flatMap { x in (0..<9).map { BitmapFont.pixel("g", x: x, y: $0) } },
                          (0..<5).flatMap { x in (0..<9).map { BitmapFont.pixel("9", x: x, y: $0) } })
    }

    /// The legend is drawn right of the plot area: no legend pixel inside the data region.
    func testLegendSitsBesideThePlot() {
        let plot = LinePlot(title: "t", series: [.init(name: "a long series name", y: [1, 2, 3]), .init(name: "b", y: [3, 2, 1])])
        let c = plot.render()
        let m = LinePlot.margins
        // The legend swatches are at the right; the plot area ends before them.
        var rightmostSwatch = 0
        for x in 0..<c.width {
            let i = 3 * ((m.top + 6) * c.width + x)
            if c.pixels[i] < 200 && c.pixels[i + 2] > 100 { rightmostSwatch = max(rightmostSwatch, x) }
        }
        XCTAssertGreaterThan(rightmostSwatch, c.width - 200)
        let bars = BarChart(title: "b", labels: ["64 tokens\nbatch 1", "x"],
                            series: [.init(name: "ours", values: [2, 3]), .init(name: "PyTorch", values: [1, .nan])])
        XCTAssertEqual(bars.render().width, 640)
    }

    /// The longest legend name is drawn whole (it used to lose its last character: "softvq"
    /// showed as "softv"), in bar charts and line plots.
    func testLegendShowsTheWholeLongestName() {
        func bars(_ first: String) -> [UInt8] {
            BarChart(title: "b", labels: ["16", "32"], series: [.init(name: first, values: [1, 2]), .init(name: "kl", values: [2, 1]),
                                                              .init(name: "vq", values: [1, 1])]).render().pixels
        }
        XCTAssertNotEqual(bars("softvq"), bars("softv"))
        func lines(_ first: String) -> [UInt8] {
            LinePlot(title: "t", series: [.init(name: first, y: [1, 2]), .init(name: "b", y: [2, 1])]).render().pixels
        }
        XCTAssertNotEqual(lines("softvq"), lines("softv"))
        XCTAssertGreaterThanOrEqual(LinePlot.legendCharacters(legendWidth: LinePlot.legendWidth(names: ["softvq", "kl"], plotWidth: 640)), 6)
    }
}
