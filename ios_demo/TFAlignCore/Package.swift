// swift-tools-version:5.9
// The iOS demo's non-UI logic (contract parsing, crop math, decoding, one-euro smoothing, latency statistics,
// benchmark JSON). Pure Swift + Foundation so `swift test` runs it on any Mac; the app links it as a local package.
import PackageDescription

let package = Package(
    name: "TFAlignCore",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "TFAlignCore", targets: ["TFAlignCore"])],
    targets: [
        .target(name: "TFAlignCore"),
        // Reads the golden vectors in ../../tests/golden, shared with the Python and Kotlin tests.
        .testTarget(name: "TFAlignCoreTests", dependencies: ["TFAlignCore"]),
    ]
)
