import ArgumentParser
import Formats
import Foundation
import Pipeline
import Render

struct PlotRuns: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot-runs",
        abstract: "Training curves of several runs in one PNG (one panel per logged field).",
        discussion: """
        Each run is <label>=<run folder>[:<field>]; the field defaults to `loss` (a tokenizer run's
        curve is `reconstruction`). Runs of the same field share a panel; panels sit side by side.
        Example: gen plot-runs "linear path=runs/sit" "cosine path=runs/sit-cosine" --out curves.png
        """)

    @OptionGroup var compute: ComputeOptions
    @Argument(help: "Runs as <label>=<run folder>[:<field>].") var runs: [String]
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output PNG.") var out: String
    @Option(help: "Title prefix of the panels.") var title = ""

    func run() throws {
        try userFacing {
            var panels: [(field: String, series: [LinePlot.Series])] = []
            for spec in runs {
                guard let eq = spec.firstIndex(of: "=") else {
                    throw PipelineError.invalidArgument("\(spec) is not <label>=<run folder>[:<field>].")
                }
                let label = String(spec[..<eq])
                var path = String(spec[spec.index(after: eq)...]), field = "loss"
                if let colon = path.lastIndex(of: ":") { field = String(path[path.index(after: colon)...]); path = String(path[..<colon]) }
                let points = RunFolder(path).logSeries(field)
                guard points.count >= 2 else {
                    throw PipelineError.invalidArgument("\(path)/log.jsonl has fewer than two records of \(field).")
                }
                let series = LinePlot.Series(name: label, x: points.map(\.0), y: points.map(\.1))
                if let i = panels.firstIndex(where: { $0.field == field }) { panels[i].series.append(series) } else { panels.append((field, [series])) }
            }
            let images = panels.map { panel in
                LinePlot(title: (title.isEmpty ? "" : title + ": ") + panel.field, xLabel: "step", yLabel: panel.field,
                         series: panel.series, logY: panel.series.allSatisfy { $0.y.allSatisfy { $0 > 0 } }).render().image
            }
            try ImageGrid.compose(rows: [images], padding: 4).writePNG(path: out)
            print("Wrote \(out)")
        }
    }
}
