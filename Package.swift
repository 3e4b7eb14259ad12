// swift-tools-version:6.1
import PackageDescription

// Kernels are compiled for the building machine's CPU (AVX-512 where it has it): without a target CPU,
// Swift lowers SIMD fused multiply-adds to per-lane libm calls. `native` keeps the build portable,
// since every machine compiles for itself.
let optimizedKernels: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "native"])]

let package = Package(
    name: "Epicycle",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "epicycle", targets: ["epicycle"]),
        .library(name: "EpicycleRuntime", targets: ["EpicycleRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C libraries from Debian: libhdf5 (serial), OpenBLAS, zlib, libpng, libjpeg-turbo; glibc's malloc.h.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // libjpeg's error exits longjmp: its calls run in a C shim (see its header).
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        // glibc's mallopt, to keep freed activation buffers for the next training step.
        .systemLibrary(name: "CMalloc"),
        // Linux's prctl, so a comparison's child runs die with their parent.
        .systemLibrary(name: "CProcess"),
        // Open MPI, for data-parallel training and comparisons over many processes and machines.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // bf16 convolution kernels on AVX512-BF16, in C because Swift cannot emit VDPBF16PS (see its header).
        .target(name: "CBFloat16"),

        // Tensors, kernels, layers, models, losses, optimizers: knows nothing of training recipes.
        .target(name: "EpicycleRuntime", dependencies: ["COpenBLAS", "CMalloc", "CBFloat16"], swiftSettings: optimizedKernels),
        // HDF5 checkpoints of models, optimizer state and training state.
        .target(name: "EpicycleCheckpoint", dependencies: ["EpicycleRuntime", "CHDF5"]),
        // Dataset readers (IDX, CIFAR, image folders), views, augmentation with a strength knob, the batch loader.
        .target(name: "EpicycleData", dependencies: ["EpicycleRuntime", "CZlib", "CPNG", "CJPEG"], swiftSettings: optimizedKernels),
        // Files for other tools: ONNX models and TensorBoard event files, over a small protobuf encoder.
        .target(name: "EpicycleExport", dependencies: ["EpicycleRuntime", "EpicycleCheckpoint"]),
        // The processes of an `mpirun` launch and the collectives Epicycle uses over them.
        .target(name: "EpicycleMPI", dependencies: ["CMPI"]),
        // The general cyclical schedule and the standard ones, as pure functions of the position.
        .target(name: "EpicycleSchedules"),
        // Recipes, the one training loop, and the pretrain / fine-tune / cycle / eval programs.
        .target(name: "EpicycleTraining", dependencies: [
            "EpicycleRuntime", "EpicycleCheckpoint", "EpicycleData", "EpicycleSchedules", "EpicycleExport", "EpicycleMPI",
            .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
        ]),

        // Knowledge distillation: a student against a frozen teacher, thin over the training loop.
        .target(name: "EpicycleDistillation", dependencies: [
            "EpicycleRuntime", "EpicycleCheckpoint", "EpicycleData", "EpicycleSchedules", "EpicycleTraining",
        ]),
        // Recipe comparisons over seeds: the runner, statistics, tables and the HTML report.
        .target(name: "EpicycleExperiments", dependencies: [
            "EpicycleCheckpoint", "EpicycleRuntime", "EpicycleTraining", "EpicycleDistillation", "EpicycleMPI", "CProcess",
            .product(name: "Yams", package: "Yams"),
        ]),

        // `epicycle bench`: its workloads (through the product's own objectives), FLOP counts and profile.
        .target(name: "EpicycleBench", dependencies: [
            "EpicycleRuntime", "EpicycleData", "EpicycleSchedules", "EpicycleTraining", "EpicycleDistillation", "EpicycleMPI",
        ]),

        .executableTarget(name: "epicycle", dependencies: [
            "EpicycleRuntime", "EpicycleCheckpoint", "EpicycleData", "EpicycleSchedules", "EpicycleTraining",
            "EpicycleDistillation", "EpicycleExperiments", "EpicycleBench", "EpicycleMPI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Shared test helpers: closeness checks, finite-difference gradient checks, fixtures.
        .target(name: "TestSupport", dependencies: ["EpicycleRuntime", "EpicycleCheckpoint", "EpicycleData"], path: "Tests/TestSupport"),
        .testTarget(name: "EpicycleRuntimeTests", dependencies: ["EpicycleRuntime", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "EpicycleCheckpointTests", dependencies: ["EpicycleCheckpoint", "TestSupport"]),
        .testTarget(name: "EpicycleDataTests", dependencies: ["EpicycleData", "TestSupport"]),
        .testTarget(name: "EpicycleSchedulesTests", dependencies: ["EpicycleSchedules"]),
        .testTarget(name: "EpicycleExportTests", dependencies: ["EpicycleExport", "EpicycleTraining", "TestSupport"]),
        .testTarget(name: "EpicycleTrainingTests", dependencies: ["EpicycleTraining", "TestSupport"]),
        .testTarget(name: "EpicycleDistillationTests", dependencies: ["EpicycleDistillation", "EpicycleCheckpoint", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "EpicycleBenchTests", dependencies: ["EpicycleBench", "EpicycleDistillation", "EpicycleRuntime", "EpicycleTraining"]),
        .testTarget(name: "EpicycleExperimentsTests", dependencies: ["EpicycleExperiments", "EpicycleTraining", "epicycle"],
                    resources: [.copy("Fixtures")]),
        // The command-line tool end to end: runs the built `epicycle` binary.
        .testTarget(name: "EpicycleCLITests", dependencies: ["epicycle", "EpicycleCheckpoint", "EpicycleData", "TestSupport",
                                                            .product(name: "Yams", package: "Yams")]),
    ]
)
