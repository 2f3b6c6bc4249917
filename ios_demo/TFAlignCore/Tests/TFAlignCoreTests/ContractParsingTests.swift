import TFAlignCore
import XCTest

final class ContractParsingTests: XCTestCase {
    /// A valid int8 contract from the shared vectors, as a mutable dictionary to break one field at a time.
    private func base() throws -> [String: Any] {
        let c = try Golden.json("app_cases.json").get("cases").list().first {
            try $0.get("name").string().hasPrefix("int8_io")
        }!
        return try c.get("contract").value as! [String: Any]
    }

    private func expectError(_ map: [String: Any], _ fragments: String..., line: UInt = #line) throws {
        let data = try JSONSerialization.data(withJSONObject: map)
        XCTAssertThrowsError(try ModelContract.parse(data, source: "models/face.json"), line: line) { error in
            let msg = "\(error)"
            XCTAssertTrue(msg.hasPrefix("models/face.json"), msg, line: line)
            for f in fragments { XCTAssertTrue(msg.contains(f), "'\(msg)' should mention '\(f)'", line: line) }
        }
    }

    private func edit(_ m: inout [String: Any], _ section: String, _ body: (inout [String: Any]) -> Void) {
        var sub = m[section] as! [String: Any]
        body(&sub)
        m[section] = sub
    }

    private func editOutput(_ m: inout [String: Any], _ body: (inout [String: Any]) -> Void) {
        var outs = m["outputs"] as! [[String: Any]]
        body(&outs[0])
        m["outputs"] = outs
    }

    func testParsesAQuantizedContract() throws {
        let k = try ModelContract.parse(JSONSerialization.data(withJSONObject: base()), source: "x.json")
        XCTAssertEqual(k.input.dtype, .int8)
        XCTAssertEqual(k.input.scale, 0.0078125)
        XCTAssertEqual(k.landmarks.zeroPoint, -128)
        XCTAssertEqual(k.scheme.numPoints, 5)
    }

    func testMissingFieldIsNamed() throws {
        var m = try base()
        edit(&m, "input") { $0.removeValue(forKey: "height") }
        try expectError(m, "input.height", "missing")
    }

    func testQuantizedInputNeedsScale() throws {
        var m = try base()
        edit(&m, "input") { $0.removeValue(forKey: "scale") }
        try expectError(m, "input.scale")
    }

    func testNewerFormatVersionIsRefused() throws {
        var m = try base()
        m["format_version"] = "2.0"
        try expectError(m, "format_version is \"2.0\"", "1.x")
    }

    func testColorMustMatchChannels() throws {
        var m = try base()
        edit(&m, "input") { $0["color"] = "GRAY" }
        try expectError(m, "input.color", "channels")
    }

    func testUnknownDtypeListsTheAllowedOnes() throws {
        var m = try base()
        editOutput(&m) { $0["dtype"] = "float64" }
        try expectError(m, "outputs[0].dtype", "\"float64\"", "\"int8\"")
    }

    func testOutputShapeMustHoldAllPoints() throws {
        var m = try base()
        editOutput(&m) { $0["shape"] = [1, 10] }
        try expectError(m, "outputs[0].shape", "[1, 5, 2]")
    }

    func testBooleanIsNotANumber() throws {
        var m = try base()
        edit(&m, "crop") { $0["scale"] = true }
        try expectError(m, "crop.scale", "must be a number")
    }

    func testOnlyBilinearCropsAreAccepted() throws {
        var m = try base()
        edit(&m, "crop") { $0["interpolation"] = "nearest" }
        try expectError(m, "crop.interpolation", "\"bilinear\"")
    }

    /// Every contract the export wrote into tests/golden parses (the real files, once they exist).
    func testRealContractsParse() throws {
        let files = (try? FileManager.default.contentsOfDirectory(at: Golden.dir, includingPropertiesForKeys: nil)) ?? []
        for f in files where f.lastPathComponent.hasSuffix(".contract.json") {
            XCTAssertGreaterThan(try ModelContract.load(f).scheme.numPoints, 0, f.path)
        }
    }
}
