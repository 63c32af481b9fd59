import ArgumentParser
import Formats
import Foundation
import Pipeline

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a clean model folder to share (config.json, model.safetensors with metadata, README.md model card).",
        discussion: """
        The source is a training run folder (its checkpoint/) or a checkpoint folder. config.json keeps the official fields and ours inside one softvq_swift object; the model card lists the training commands, data, steps, epochs, wall time, the last training metrics and gen eval's table when the run has one, and the identity (name + sha256). The folder is written beside the destination and renamed into place.

        Example: gen export Checkpoints/fashion-sit exported/fashion-sit
        """)

    @OptionGroup var compute: ComputeOptions
    @Argument(help: "Run folder or checkpoint folder.") var source: String
    @Argument(help: "Destination folder (created).") var destination: String
    @Option(help: "Model name recorded in the card and metadata (default: the run's folder name).") var name: String?
    @Flag(help: "Replace config.json, model.safetensors and README.md in an existing folder.") var overwrite = false

    func run() throws {
        compute.apply()
        try userFacing {
            let r = try ExportJob.run(source: source, to: destination, name: name, overwrite: overwrite)
            print("Exported \(r.kind == "sit" ? "SiT" : "tokenizer") '\(r.name)' to \(r.folder) (model.safetensors sha256 \(r.sha256)).")
        }
    }
}
