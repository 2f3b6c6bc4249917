import CoreGraphics
import Foundation
import ImageIO
import TFAlignCore
import XCTest

/// The export's golden landmarks (tests/golden/landmarks_*.json + crop PNG), as tests/app_reference.py turns them
/// into app-core checks: through the app's crop with the golden's identity box, the PNG becomes bit for bit the model
/// input tfalign.runtime builds (per export mode), and the expected points decode to u × W - 0.5.
final class ExportGoldenTests: XCTestCase {
    private func section() throws -> JSONNode {
        let golden = try Golden.json("app_cases.json")
        try XCTSkipUnless(golden.has("export_golden"), "no export golden in app_cases.json")
        return try golden.get("export_golden")
    }

    /// RGBA8 pixels of a PNG, drawn in the image's own colour space so no colour conversion touches them.
    private func loadPNG(_ url: URL) throws -> (pixels: [UInt8], width: Int, height: Int) {
        guard let source = CGImageSourceCreateWithURL(url as CFURL, nil),
              let image = CGImageSourceCreateImageAtIndex(source, 0, nil) else {
            throw ContractError("\(url.path): cannot decode the PNG")
        }
        let w = image.width, h = image.height
        var pixels = [UInt8](repeating: 0, count: 4 * w * h)
        let space = image.colorSpace ?? CGColorSpaceCreateDeviceRGB()
        try pixels.withUnsafeMutableBytes { buf in
            guard let ctx = CGContext(data: buf.baseAddress, width: w, height: h, bitsPerComponent: 8,
                                      bytesPerRow: 4 * w, space: space,
                                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else {
                throw ContractError("cannot make a bitmap context for \(url.path)")
            }
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        }
        return (pixels, w, h)
    }

    private func window(_ c: JSONNode, _ k: ModelContract) throws -> CropWindow {
        let b = try c.get("box").doubles()
        return CropWindow(box: FaceBox(x: b[0], y: b[1], w: b[2], h: b[3]), crop: k.crop)
    }

    func testPNGThroughTheAppCropIsTheRuntimeInputBitForBit() throws {
        let g = try section()
        let png = try loadPNG(Golden.dir.appendingPathComponent(try g.get("png").string()))
        let cases = try g.get("cases").list()
        XCTAssertEqual(Set(try cases.map { try $0.get("mode").string() }), ["none", "float16", "dynamic", "int8"])
        try png.pixels.withUnsafeBufferPointer { buf in
            let frame = PixelFrame(pixels: buf, width: png.width, height: png.height, bytesPerRow: 4 * png.width,
                                   bytesPerPixel: 4, red: 0, green: 1, blue: 2)
            for c in cases {
                let mode = try c.get("mode").string()
                let k = try ModelContract.parse(Golden.data(c.get("contract")), source: "export golden \(mode)")
                let w = try window(c, k)
                XCTAssertEqual([w.cx, w.cy, w.side], try c.get("expected_window").doubles(), mode)
                let enc = InputEncoder(contract: k)
                let values = enc.values(enc.crop(frame, window: w))
                let head = try c.get("expected_input_head").doubles()
                for j in head.indices { XCTAssertEqual(Double(values[j]), head[j], "\(mode) input[\(j)]") }
                var bytes = Data()
                for v in values {
                    switch k.input.dtype {
                    case .float32: withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
                    case .int8: bytes.append(UInt8(bitPattern: Int8(v)))
                    case .uint8: bytes.append(UInt8(v))
                    case .float16: withUnsafeBytes(of: Half.fromFloat(v).littleEndian) { bytes.append(contentsOf: $0) }
                    }
                }
                XCTAssertEqual(SHA256Hex.of(bytes), try c.get("expected_input_sha256").string(), mode)
            }
        }
    }

    func testExpectedPointsDecodeToCropPixels() throws {
        for c in try section().get("cases").list() {
            let k = try ModelContract.parse(Golden.data(c.get("contract")), source: "export golden")
            let raw = try c.get("raw_output").doubles()
            let pts = try LandmarkDecoder(contract: k).decode(raw, window: try window(c, k))
            let expected = try c.get("expected_points").list().flatMap { try $0.doubles() }
            XCTAssertEqual(pts.count, 2 * k.scheme.numPoints)
            for j in expected.indices {
                XCTAssertEqual(pts[j], expected[j], accuracy: 1e-4)
                XCTAssertEqual(pts[j], raw[j] * Double(k.input.width) - 0.5, accuracy: 1e-9)  // identity box
            }
        }
    }
}
