import TFAlignCore
import XCTest

/// tests/golden/app_cases.json: crop window, preprocessing, decoding and percentiles against tfalign (Python).
final class ContractMathTests: XCTestCase {
    private var golden: JSONNode!
    private var cases: [JSONNode] = []

    override func setUpWithError() throws {
        golden = try Golden.json("app_cases.json")
        cases = try golden.get("cases").list()
    }

    private func contract(_ c: JSONNode) throws -> ModelContract {
        try ModelContract.parse(Golden.data(c.get("contract")), source: c.get("name").string())
    }

    private func box(_ c: JSONNode) throws -> FaceBox {
        let b = try c.get("box").doubles()
        return FaceBox(x: b[0], y: b[1], w: b[2], h: b[3])
    }

    func testVectorsCoverEveryInputKind() throws {
        let contracts = try cases.map { try contract($0) }
        XCTAssertEqual(Set(contracts.map(\.input.dtype)), Set(DType.allCases))
        XCTAssertEqual(Set(contracts.map(\.landmarks.origin)), Set(Origin.allCases))
        XCTAssertEqual(Set(contracts.map(\.input.modelNormalizes)), [true, false])
    }

    func testCropWindowFromBox() throws {
        let tol = try golden.get("tolerance").get("window").double()
        for c in cases {
            let w = CropWindow(box: try box(c), crop: try contract(c).crop)
            let e = try c.get("expected_window").doubles()
            XCTAssertEqual(w.cx, e[0], accuracy: tol)
            XCTAssertEqual(w.cy, e[1], accuracy: tol)
            XCTAssertEqual(w.side, e[2], accuracy: tol)
        }
    }

    func testDecodesRawValuesToImagePoints() throws {
        let tol = try golden.get("tolerance").get("points").double()
        for c in cases {
            let k = try contract(c), name = try c.get("name").string()
            let pts = try LandmarkDecoder(contract: k).decode(try c.get("raw_output").doubles(),
                                                              window: CropWindow(box: try box(c), crop: k.crop))
            let expected = try c.get("expected_points").list().flatMap { try $0.doubles() }
            XCTAssertEqual(pts.count, expected.count)
            for j in expected.indices {
                XCTAssertEqual(pts[j], expected[j], accuracy: tol, "\(name)[\(j)]")
            }
        }
    }

    func testEncodesInputTensor() throws {
        let img = try golden.get("image")
        let w = try img.get("width").int(), h = try img.get("height").int()
        let rgb = try img.get("rgb").ints().map { UInt8($0) }
        let tol = try golden.get("tolerance")
        try rgb.withUnsafeBufferPointer { buf in
            let frame = PixelFrame(pixels: buf, width: w, height: h, bytesPerRow: 3 * w, bytesPerPixel: 3,
                                   red: 0, green: 1, blue: 2)
            for c in cases {
                let k = try contract(c), name = try c.get("name").string()
                let enc = InputEncoder(contract: k)
                let got = enc.values(enc.crop(frame, window: CropWindow(box: try box(c), crop: k.crop)))
                let expected = try c.get("expected_input").doubles()
                let integers = k.input.dtype.quantized || k.input.modelNormalizes
                let t = try (integers ? tol.get("input_quantized") : tol.get("input_float")).double()
                XCTAssertEqual(got.count, expected.count)
                for j in expected.indices {
                    XCTAssertEqual(Double(got[j]), expected[j], accuracy: t, "\(name) input[\(j)]")
                }
            }
        }
    }

    func testHalfPrecisionMatchesNumpy() throws {
        let h = try golden.get("float16")
        let f32 = try h.get("float32_bits").list().map { Float(bitPattern: UInt32(try $0.double())) }
        let f16 = try h.get("float16_bits").ints()
        for k in f32.indices {
            XCTAssertEqual(Int(Half.fromFloat(f32[k])), f16[k], "float16 of \(f32[k])")
        }
    }

    func testPercentilesMatchNumpy() throws {
        let s = try golden.get("stats"), e = try s.get("expected")
        let t = try golden.get("tolerance").get("stats").double()
        let sum = LatencySummary(samplesMs: try s.get("samples_ms").doubles())
        XCTAssertEqual(sum.p50Ms, try e.get("p50_ms").double(), accuracy: t)
        XCTAssertEqual(sum.p90Ms, try e.get("p90_ms").double(), accuracy: t)
        XCTAssertEqual(sum.p95Ms, try e.get("p95_ms").double(), accuracy: t)
        XCTAssertEqual(sum.p99Ms, try e.get("p99_ms").double(), accuracy: t)
        XCTAssertEqual(sum.meanMs, try e.get("mean_ms").double(), accuracy: t)
    }

    func testRollingLatencyKeepsTheLastFrames() {
        var r = RollingLatency(capacity: 3)
        for k in 1...5 { r.add(preMs: Double(k), inferenceMs: 10 * Double(k), postMs: 0.5) }
        XCTAssertEqual(r.size, 3)
        XCTAssertEqual(r.summary(.pre)!.p50Ms, 4)
        XCTAssertTrue(r.overlayText.hasPrefix("pre 4.0 · inference 40.0 · post 0.5 ms"), r.overlayText)
    }
}
