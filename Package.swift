// swift-tools-version:6.0
import PackageDescription

// Data flows one way, and the targets show it:
//   safetensors (HF layout) -> qwen-quant -> pack -> loader (Quant) -> kernels (C) -> models (QwenImage) -> qwen-run
// No unsafeFlags and no package-wide -m flags: the C kernels pick instruction sets per function
// with __attribute__((target(...))) and a runtime dispatch table.
//
// Linux only (no `platforms:` entry claims macOS): the SIMD tiers are x86-64 ones (NEON to come), and
// the kernel tests call them by name to compare them with the scalar reference; on macOS they would
// compare nothing (or not build), so claiming that platform would promise what no test checks. The
// system libraries come from apt (Debian names below), the allocator tuning is glibc's.
let package = Package(
    name: "qwen-image-cpu",
    products: [
        .executable(name: "qwen-quant", targets: ["qwen-quant"]),
        .executable(name: "qwen-run", targets: ["qwen-run"]),
        .executable(name: "qwen-bench", targets: ["qwen-bench"]),
        .library(name: "QwenImage", targets: ["QwenImage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `qwen-run serve` only: the HTTP/1.1 parser and event loops (no hand-written HTTP parsing).
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libpng-dev, libjpeg62-turbo-dev).
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),

        // C: SIMD kernels with scalar reference twins, runtime dispatch, thread pool. No I/O.
        .target(name: "Kernels", path: "Sources/Kernels",
                cSettings: [.define("_GNU_SOURCE")],
                linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread", .when(platforms: [.linux]))]),
        // C: a SIGBUS handler that names the mapped input file another program truncated (no I/O otherwise).
        .target(name: "CMapGuard", path: "Sources/CMapGuard"),
        // C: libpng / libjpeg calls behind setjmp (both report errors by longjmp, which Swift cannot catch).
        .target(name: "CImageShim", dependencies: ["CPNG", "CJPEG"], path: "Sources/CImageShim",
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),
        // Formats: safetensors, the pack format, mmap, zstd, checksums; Swift wrappers of the kernels.
        .target(name: "Quant", dependencies: ["Kernels", "CZstd", "CMapGuard"], path: "Sources/Quant"),
        // Models, tokenizer, image I/O and preprocessing, checkpoint name table, converter.
        .target(name: "QwenImage", dependencies: ["Quant", "Kernels", "CPNG", "CJPEG", "CImageShim"], path: "Sources/QwenImage"),

        .executableTarget(name: "qwen-quant", dependencies: [
            "Quant", "QwenImage", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/qwen-quant"),
        .executableTarget(name: "qwen-run", dependencies: [
            "Quant", "QwenImage", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], path: "Sources/qwen-run"),
        .executableTarget(name: "qwen-bench", dependencies: [
            "Quant", "QwenImage", "Kernels", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "benchmarks/qwen-bench"),

        // Fuzz harnesses over QwenImage.ParserHarness (Tests/fuzz/run.sh); a corpus replayer in normal builds.
        .executableTarget(name: "qwen-fuzz", dependencies: ["QwenImage"], path: "Tests/fuzz/qwen-fuzz"),

        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "Quant"], path: "Tests/KernelsTests"),
        .testTarget(name: "QuantTests", dependencies: ["Quant", "QwenImage"], path: "Tests/QuantTests"),
        .testTarget(name: "QwenImageTests", dependencies: ["QwenImage", "Quant"], path: "Tests/QwenImageTests"),
    ]
)
