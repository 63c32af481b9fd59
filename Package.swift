// swift-tools-version:6.0
import PackageDescription

// Optimized in debug builds too: the tests train small models.
let optimize: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "SoftVQ",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "gen", targets: ["gen"]),
        .library(name: "Tensor", targets: ["Tensor"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
        .library(name: "SiT", targets: ["SiT"]),
        .library(name: "Sampler", targets: ["Sampler"]),
        .library(name: "Formats", targets: ["Formats"]),
        .library(name: "Render", targets: ["Render"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Pipeline", targets: ["Pipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian packages), bound through pkg-config and small shim headers.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        // Open MPI, for jobs of many processes (launched by mpirun; linked, initialized only then).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // oneDNN 2.6 (no pkg-config file in Debian): the module map links libdnnl and GNU OpenMP.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // libpng reports errors by longjmp; the setjmp stays inside this C target.
        .target(name: "CPNG", path: "Sources/CPNG",
                cSettings: [.unsafeFlags(["-I/usr/include/libpng16"])],
                linkerSettings: [.linkedLibrary("png16")]),

        // Vectorized elementwise math (polynomial exp/tanh/erf), compiled per ISA.
        .target(name: "CKernels", path: "Sources/CKernels",
                cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=fast"])]),
        .target(name: "Tensor", dependencies: ["CBLAS", "CDNNL", "CKernels"], swiftSettings: optimize),
        // The processes of a job: rank, size, allreduce, broadcast, gather (MPI or one process).
        .target(name: "Cluster", dependencies: ["CMPI"], swiftSettings: optimize),
        .target(name: "Tokenizer", dependencies: ["Tensor"], swiftSettings: optimize),
        .target(name: "SiT", dependencies: ["Tensor"], swiftSettings: optimize),
        .target(name: "Sampler", dependencies: ["Tensor"], swiftSettings: optimize),
        // File formats (PNG/JPEG, HDF5 latent cache, .npz, gzip, SHA-256), datasets and
        // rendering (grids, plots, progress) need no model; Pipeline holds the jobs that do.
        .target(name: "Formats", dependencies: ["Tensor", "CHDF5", "CTurboJPEG", "CZlib", "CPNG"],
                swiftSettings: optimize),
        .target(name: "Datasets", dependencies: ["Formats", "Tensor"], swiftSettings: optimize),
        .target(name: "Render", dependencies: ["Formats", "Tensor"], swiftSettings: optimize),
        .target(name: "Pipeline",
                dependencies: ["Tensor", "Tokenizer", "SiT", "Sampler", "Formats", "Datasets", "Render", "Cluster", "CHDF5", "CBLAS"],
                swiftSettings: optimize),
        .executableTarget(name: "gen",
                          dependencies: ["Pipeline", "Cluster", "Formats", "Datasets", "Render", "Tensor", "Tokenizer", "SiT", "Sampler",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: optimize),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "SiTTests", dependencies: ["SiT", "Sampler", "Tensor"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "Tensor"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Formats", "Datasets", "Render", "SiT", "Tensor"]),
        // End-to-end tests of the gen executable (subprocesses, including kill -9 and resume).
        .testTarget(name: "GenTests", dependencies: ["gen", "Cluster", "Pipeline", "Formats", "Datasets", "SiT", "Sampler", "Tensor"]),
    ],
    swiftLanguageModes: [.v5]
)
