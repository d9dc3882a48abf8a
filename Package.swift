// swift-tools-version: 6.0
// lftf-patch: locate the block most tied to gender bias, fine-tune it, ship a delta patch.
//
// Dependencies point one way:
//   LFTFPatchCLI → Debias → LlamaModel → Tokenizer, TensorMath, ModelFormats
//   LFTFPatchCLI → Patch → ModelFormats, CZstd, Crypto
//   TensorMath → CBLAS
// Patch never imports the model code: apply, revert, verify and info need none of it.
import PackageDescription

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "lftf-patch",
    products: [
        .executable(name: "lftf-patch", targets: ["LFTFPatchCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // MARK: System libraries (Debian libopenblas-dev, libzstd-dev)
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // MARK: Bottom: formats and math
        .target(name: "ModelFormats", swiftSettings: optimize),
        .target(name: "TensorMath", dependencies: ["CBLAS"], swiftSettings: optimize),

        // MARK: Middle: tokenizer, model, debias
        .target(name: "Tokenizer", dependencies: ["ModelFormats"], swiftSettings: optimize),
        .target(name: "LlamaModel", dependencies: ["ModelFormats", "TensorMath", "Tokenizer"], swiftSettings: optimize),
        .target(name: "Debias", dependencies: ["LlamaModel", "Tokenizer", "TensorMath", "ModelFormats"], swiftSettings: optimize),

        // MARK: Patch format (no model code)
        .target(name: "Patch", dependencies: [
            "ModelFormats", "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: optimize),

        // MARK: The CLI, a thin layer on top
        .executableTarget(name: "LFTFPatchCLI", dependencies: [
            "ModelFormats", "TensorMath", "Tokenizer", "LlamaModel", "Debias", "Patch",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: optimize),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["ModelFormats"], path: "Tests/TestSupport"),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TensorMathTests", dependencies: ["TensorMath", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "LlamaModelTests", dependencies: ["LlamaModel", "TestSupport"]),
        .testTarget(name: "DebiasTests", dependencies: ["Debias", "TestSupport"]),
        .testTarget(name: "PatchTests", dependencies: ["Patch", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
