import Foundation
import TFAlignCore
import XCTest

/// tests/golden of the repository (shared with the Python and Kotlin tests), or $TFALIGN_GOLDEN.
enum Golden {
    static var dir: URL {
        if let env = ProcessInfo.processInfo.environment["TFALIGN_GOLDEN"] { return URL(fileURLWithPath: env) }
        // This file is ios_demo/TFAlignCore/Tests/TFAlignCoreTests/Golden.swift: the repository is 5 levels up.
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url = url.deletingLastPathComponent() }
        return url.appendingPathComponent("tests/golden")
    }

    static func json(_ name: String) throws -> JSONNode {
        let url = dir.appendingPathComponent(name)
        return try JSONNode.parse(try Data(contentsOf: url), source: url.path)
    }

    /// A JSON sub-tree back to bytes, to feed a parser.
    static func data(_ node: JSONNode) throws -> Data {
        try JSONSerialization.data(withJSONObject: node.value!, options: [])
    }
}
