// `gen eval`: measured quality of a tokenizer and a SiT on Fashion-MNIST's test split, with the
// project's own classifier: classifier accuracy; reconstruction PSNR, SSIM and feature Frechet
// distance; generation class fidelity and FD against the test set, next to the train-vs-test
// FD floor (and the same distance at the sweep's sample count); and a sweep over sampler, CFG
// scale, sampler steps and guidance interval (table + plots), written again after every setting
// so an interrupted sweep keeps what it measured.

import Datasets
import Formats
import Foundation
import Render
import Sampler
import SiT
import Tensor
import Tokenizer

public struct EvalOptions: Sendable {
    public var sit: String?
    public var tokenizer: String
    public var classifier: String
    public var perClass: Int = 50
    public var cfgScales: [Double] = [1, 1.5, 2, 3]
    public var steps: [Int] = [10, 25]
    public var methods: [SamplerMethod] = [.euler]
    public var guidanceLow: Double = 0
    /// Upper ends of the guidance interval [guidanceLow, high] to sweep (1: guidance at every t).
    public var guidanceHighs: [Double] = [1]
    public var seed: UInt64 = 0
    public var reconstructionLimit: Int? = nil
    public var out: String? = nil

    public init(tokenizer: String, classifier: String) {
        self.tokenizer = tokenizer
        self.classifier = classifier
    }
}

public struct GenerationScore: Codable, Sendable {
    /// The sampler (absent in reports written before the sweep had one: Euler).
    public var sampler: String? = nil
    public let cfgScale: Double
    public let steps: Int
    /// [low, high]: guidance applies where low <= t <= high (absent in reports written before
    /// the sweep recorded it, and for cfg 1, where there is no guidance).
    public var guidanceInterval: [Double]? = nil
    public let classFidelity: Double
    public let fd: Double
    public let seconds: Double
}

public struct EvalReport: Codable, Sendable {
    public var classifierAccuracy: Double = 0
    public var reconstructionPSNR: Double = 0
    public var reconstructionSSIM: Double = 0
    public var reconstructionFD: Double = 0
    public var trainTestFD: Double = 0
    /// The floor at the sweep's sample count: FD of as many training images as each setting
    /// generates against the 10,000 test images (FD is biased upward at small counts; this is
    /// what a perfect generator would score). Nil without a sweep.
    public var trainTestFDAtSweepCount: Double? = nil
    public var generation: [GenerationScore] = []
    public var images: Int = 0
    /// Settings the sweep plans; `generation.count` of them are measured (fewer while it runs,
    /// or when it was interrupted).
    public var settingsPlanned: Int? = nil

    public func table() -> String {
        var s = "| metric | value |\n|---|---|\n"
        s += String(format: "| classifier test accuracy | %.2f%% |\n", classifierAccuracy * 100)
        s += String(format: "| reconstruction PSNR (test) | %.2f dB |\n", reconstructionPSNR)
        s += String(format: "| reconstruction SSIM (test) | %.4f |\n", reconstructionSSIM)
        s += String(format: "| reconstruction FD (features) | %.3f |\n", reconstructionFD)
        s += String(format: "| train-vs-test FD (floor) | %.3f |\n", trainTestFD)
        if let f = trainTestFDAtSweepCount {
            s += String(format: "| train-vs-test FD, %d training images (floor at the sweep's count) | %.3f |\n", images, f)
        }
        if !generation.isEmpty {
            s += "\n| sampler | cfg | steps | guidance on t | class fidelity | FD vs test | FD / floor | seconds |\n|---|---|---|---|---|---|---|---|\n"
            for g in generation {
                let interval = g.guidanceInterval.map { String(format: "[%g, %g]", $0[0], $0[1]) } ?? (g.cfgScale == 1 ? "none" : "[0, 1]")
                s += String(format: "| %@ | %.2f | %d | %@ | %.2f%% | %.3f | %.2fx | %.1f |\n", g.sampler ?? "euler", g.cfgScale, g.steps, interval,
                            g.classFidelity * 100, g.fd, g.fd / max(trainTestFD, 1e-9), g.seconds)
            }
        }
        if let planned = settingsPlanned, generation.count < planned {
            s += "\n\(generation.count) of \(planned) settings measured (the sweep is running, or was interrupted).\n"
        }
        return s
    }
}

public enum EvalJob {
    /// Fashion-MNIST images (N, 1, 28, 28) in [-1, 1].
    public static func classifierImages(_ data: FashionMNIST, limit: Int? = nil) -> Tensor {
        classifierImages(data, indices: Array(0..<min(data.count, limit ?? .max)))
    }

    /// The images at `indices`, in that order.
    public static func classifierImages(_ data: FashionMNIST, indices: [Int]) -> Tensor {
        let t = Tensor(uninitialized: [indices.count, 1, 28, 28])
        for (r, i) in indices.enumerated() {
            for p in 0..<784 { t.pointer[r * 784 + p] = Float(data.images[i * 784 + p]) / 127.5 - 1 }
        }
        return t
    }

    public static func accuracy(_ predictions: [Int], _ labels: [Int]) -> Double {
        Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(1, labels.count))
    }

    /// What every evaluation with one classifier shares: the classifier, the test images'
    /// features, its accuracy and the train-vs-test floor.
    struct Reference {
        let classifier: FashionClassifier
        let testFeatures: Tensor
        let testStats: GaussianStats
        let accuracy: Double
        let trainTestFD: Double
    }

    /// Computed once per process and classifier file (gen ablate evaluates many models).
    nonisolated(unsafe) static var references: [String: (Date, Reference)] = [:]
    static let referencesLock = NSLock()

    static func reference(classifier path: String) throws -> Reference {
        referencesLock.lock()
        defer { referencesLock.unlock() }
        let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? nil
        if let (date, ref) = references[path], date == modified ?? .distantPast { return ref }
        let classifier = try FashionClassifier.load(path: path)
        classifier.freeze()
        let test = try FashionMNIST(split: .test), train = try FashionMNIST(split: .train)
        let testImages = classifierImages(test)
        let (testFeatures, testPred) = classifier.evaluate(testImages)
        let (trainFeatures, _) = classifier.evaluate(classifierImages(train, limit: test.count))
        let testStats = GaussianStats(features: testFeatures)
        let ref = Reference(classifier: classifier, testFeatures: testFeatures, testStats: testStats,
                            accuracy: accuracy(testPred, test.labels),
                            trainTestFD: try FrechetDistance.distance(GaussianStats(features: trainFeatures), testStats))
        references[path] = (modified ?? .distantPast, ref)
        return ref
    }

    public static func run(_ o: EvalOptions, log: (String) -> Void = { print($0) }) throws -> EvalReport {
        var report = EvalReport()
        if let sit = o.sit {
            // The classifier scores Fashion-MNIST's labels: the SiT's classes must be those, in order.
            let names = GenerationModels.classNames(try SiTConfig.read(from: (sit as NSString).appendingPathComponent("config.json")))
            guard names == FashionMNIST.classNames else {
                throw PipelineError.invalidArgument("The SiT in \(sit) generates the classes \(names.prefix(3).joined(separator: ", "))\(names.count > 3 ? ", ..." : "") (\(names.count)), not Fashion-MNIST's \(FashionMNIST.classNames.prefix(3).joined(separator: ", ")), ... in that order; gen eval scores only Fashion-MNIST models.")
            }
        }
        let ref = try reference(classifier: o.classifier)
        let (classifier, testFeatures, testStats) = (ref.classifier, ref.testFeatures, ref.testStats)
        report.classifierAccuracy = ref.accuracy
        log(String(format: "classifier test accuracy: %.2f%%", report.classifierAccuracy * 100))
        report.trainTestFD = ref.trainTestFD
        log(String(format: "train-vs-test FD (floor): %.3f", report.trainTestFD))

        // Reconstruction of the test split.
        let tokenizer = try SoftVQModel.load(folder: o.tokenizer, log: log)
        tokenizer.freeze()
        let dataset = try ImageDataset.open("fashion-mnist:test", size: tokenizer.imageSize)
        let n = min(dataset.count, o.reconstructionLimit ?? .max)
        let recon = Tensor(uninitialized: [n, 1, 28, 28])
        var psnrSum = 0.0, ssimSum = 0.0
        let bar = ProgressBar(total: n, label: "reconstruct", unit: "img")
        for start in stride(from: 0, to: n, by: 100) {
            let idx = Array(start..<min(n, start + 100))
            let (images, _) = try dataset.batch(idx)
            let out = try Autograd.noGrad { try tokenizer.reconstruct(images).0 }
            let r = ImageMetrics.classifierInput(out), x = ImageMetrics.classifierInput(images)
            for k in 0..<idx.count {
                let a = (0..<784).map { (r.pointer[k * 784 + $0] + 1) / 2 }
                let b = (0..<784).map { (x.pointer[k * 784 + $0] + 1) / 2 }
                psnrSum += ImageMetrics.psnr(a, b)
                ssimSum += ImageMetrics.ssim(a, b, height: 28, width: 28)
            }
            (recon.pointer + start * 784).update(from: r.pointer, count: r.count)
            bar.update(by: idx.count)
        }
        bar.finish()
        report.reconstructionPSNR = psnrSum / Double(n)
        report.reconstructionSSIM = ssimSum / Double(n)
        let (reconFeatures, _) = classifier.evaluate(recon)
        let origFeatures = testFeatures.slice(axis: 0, 0..<n)
        report.reconstructionFD = try FrechetDistance.distance(features: reconFeatures, origFeatures)
        log(String(format: "reconstruction: PSNR %.2f dB, SSIM %.4f, FD %.3f (%d test images)",
                   report.reconstructionPSNR, report.reconstructionSSIM, report.reconstructionFD, n))

        // Generation sweep.
        if let sit = o.sit {
            let models = try GenerationModels(sit: sit, tokenizer: o.tokenizer)
            let classes = Array(0..<models.sit.config.numClasses)
            var base = GenerationOptions(sit: sit, tokenizer: o.tokenizer)
            base.perClass = o.perClass; base.seed = o.seed
            let items = try GenerationJob.items(base, classes: classes)
            report.images = items.count
            // The floor at this count: as many training images, class-balanced, against the test set.
            let train = try FashionMNIST(split: .train)
            let balanced = balancedIndices(labels: train.labels, perClass: o.perClass)
            if balanced.count == items.count {
                let (f, _) = classifier.evaluate(classifierImages(train, indices: balanced))
                report.trainTestFDAtSweepCount = try FrechetDistance.distance(GaussianStats(features: f), testStats)
                log(String(format: "train-vs-test FD with %d training images (the floor at this count): %.3f", balanced.count,
                           report.trainTestFDAtSweepCount!))
            }
            let settings = sweepSettings(o)
            report.settingsPlanned = settings.count
            if let out = o.out { try write(report, o, to: out) }
            for s in settings {
                var g = GenerationOptions(sit: sit, tokenizer: o.tokenizer)
                g.steps = s.steps; g.cfgScale = s.cfg; g.method = s.method; g.guidanceLow = o.guidanceLow
                g.guidanceHigh = s.guidanceHigh; g.batchSize = 100; g.batchInvariant = false
                let t0 = now()
                let label = "\(s.method.rawValue) cfg \(s.cfg) steps \(s.steps)" + GenerationJob.guidanceSuffix(cfg: s.cfg, low: o.guidanceLow, high: s.guidanceHigh)
                let gbar = ProgressBar(total: items.count * s.steps, label: label, unit: "img-step")
                let images = try GenerationJob.generate(models, g, items: items) { gbar.update(by: $0) }
                gbar.finish()
                let (features, predictions) = classifier.evaluate(ImageMetrics.classifierInput(images.map(\.image)))
                let score = GenerationScore(sampler: s.method.rawValue, cfgScale: s.cfg, steps: s.steps,
                                            guidanceInterval: s.cfg == 1 ? nil : [o.guidanceLow, s.guidanceHigh],
                                            classFidelity: accuracy(predictions, images.map(\.label)),
                                            fd: try FrechetDistance.distance(GaussianStats(features: features), testStats),
                                            seconds: now() - t0)
                log(String(format: "%@: class fidelity %.2f%%, FD %.3f (%.2fx floor)", label,
                           score.classFidelity * 100, score.fd, score.fd / max(report.trainTestFD, 1e-9)))
                report.generation.append(score)
                if let out = o.out { try write(report, o, to: out) }
            }
        }
        if let out = o.out {
            // The sweep rewrote the files before and after each of its settings; without a SiT
            // this is the only write.
            if o.sit == nil { try write(report, o, to: out) }
            log("Wrote \(out)/eval.md, eval.json and plots.")
        }
        return report
    }

    /// One generation setting of the sweep.
    struct Setting: Equatable {
        let method: SamplerMethod
        let steps: Int
        let guidanceHigh: Double
        let cfg: Double
    }

    /// sampler x steps x guidance interval x cfg, in that nesting; cfg 1 has no guidance, so it
    /// is measured once per sampler and step count, whatever the intervals.
    static func sweepSettings(_ o: EvalOptions) -> [Setting] {
        var settings: [Setting] = []
        for method in o.methods {
            for steps in o.steps {
                for (k, high) in o.guidanceHighs.enumerated() {
                    for cfg in o.cfgScales where cfg != 1 || k == 0 {
                        settings.append(Setting(method: method, steps: steps, guidanceHigh: high, cfg: cfg))
                    }
                }
            }
        }
        return settings
    }

    /// eval.md, eval.json and the plots for what `report` holds so far (each file replaced whole).
    static func write(_ report: EvalReport, _ o: EvalOptions, to out: String) throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try atomicWrite(Data(report.table().utf8), to: out + "/eval.md")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try atomicWrite(try enc.encode(report), to: out + "/eval.json")
        if !report.generation.isEmpty {
            var fdSeries: [LinePlot.Series] = [], fidSeries: [LinePlot.Series] = []
            for method in o.methods {
                for steps in o.steps {
                    for high in o.guidanceHighs {
                        // cfg 1 (no guidance) belongs to every interval's curve.
                        let rows = report.generation.filter {
                            $0.steps == steps && ($0.sampler ?? "euler") == method.rawValue && ($0.cfgScale == 1 || $0.guidanceInterval?[1] == high)
                        }
                        if rows.isEmpty { continue }
                        var name = o.methods.count > 1 ? "\(method.rawValue), \(steps) steps" : "\(steps) steps"
                        if o.guidanceHighs.count > 1 { name += String(format: ", t <= %g", high) }
                        fdSeries.append(.init(name: "FD, " + name, x: rows.map(\.cfgScale), y: rows.map(\.fd)))
                        fidSeries.append(.init(name: "fidelity %, " + name, x: rows.map(\.cfgScale), y: rows.map { $0.classFidelity * 100 }))
                    }
                }
            }
            fdSeries.append(.init(name: "train-vs-test floor", x: o.cfgScales, y: o.cfgScales.map { _ in report.trainTestFD }))
            if let f = report.trainTestFDAtSweepCount {
                fdSeries.append(.init(name: "floor at \(report.images) images", x: o.cfgScales, y: o.cfgScales.map { _ in f }))
            }
            try LinePlot(title: "Frechet distance to the test set vs CFG scale", xLabel: "cfg scale", yLabel: "FD", series: fdSeries)
                .writePNG(path: out + "/eval_fd.png")
            try LinePlot(title: "class fidelity vs CFG scale", xLabel: "cfg scale", yLabel: "%", series: fidSeries)
                .writePNG(path: out + "/eval_fidelity.png")
        }
    }
}

/// The first `perClass` indices of each label 0..<classes in `labels` order, by class (the
/// order the sweep generates: class 0's images first); fewer when a class runs short.
func balancedIndices(labels: [Int], perClass: Int) -> [Int] {
    let classes = (labels.max() ?? -1) + 1
    var picked = [[Int]](repeating: [], count: max(classes, 0))
    for (i, l) in labels.enumerated() where picked[l].count < perClass { picked[l].append(i) }
    return picked.flatMap { $0 }
}
