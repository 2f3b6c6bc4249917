import Foundation

/// An upright frame: `bytesPerPixel`-interleaved 8-bit pixels with red, green and blue at the given offsets
/// (BGRA camera buffers: r 2, g 1, b 0).
public struct PixelFrame {
    public let pixels: UnsafeBufferPointer<UInt8>
    public let width: Int, height: Int, bytesPerRow: Int, bytesPerPixel: Int
    public let red: Int, green: Int, blue: Int

    public init(pixels: UnsafeBufferPointer<UInt8>, width: Int, height: Int, bytesPerRow: Int,
                bytesPerPixel: Int = 4, red: Int = 2, green: Int = 1, blue: Int = 0) {
        precondition(pixels.count >= (height - 1) * bytesPerRow + width * bytesPerPixel, "frame buffer too small")
        self.pixels = pixels; self.width = width; self.height = height; self.bytesPerRow = bytesPerRow
        self.bytesPerPixel = bytesPerPixel; self.red = red; self.green = green; self.blue = blue
    }
}

/// Crops, resizes and normalises a frame as the contract describes; the same math as android_demo/core and
/// tests/app_reference.py. Bilinear with pixel centres at integers and `crop.border` outside the frame, rounded to
/// 0-255 like the uint8 crop `tfalign.data.geometry` makes; GRAY is rounded BT.601 luma; normalisation in Float
/// (float32) like NumPy's.
public struct InputEncoder {
    public let input: InputSpec
    public let border: Double

    public init(input: InputSpec, border: Double) { self.input = input; self.border = border }
    public init(contract: ModelContract) { self.init(input: contract.input, border: contract.crop.border) }

    /// The rounded crop, height × width × (1 or 3) values in 0...255, in the model's colour (RGB or GRAY).
    public func crop(_ frame: PixelFrame, window: CropWindow) -> [UInt8] {
        let h = input.height, w = input.width
        var out = [UInt8](repeating: 0, count: h * w * input.channels)
        var k = 0
        for i in 0..<h {
            let sy = window.sourceY(i, height: h)
            for j in 0..<w {
                let rgb = sample(frame, window.sourceX(j, width: w), sy)
                if input.gray {
                    out[k] = UInt8((0.299 * rgb.0 + 0.587 * rgb.1 + 0.114 * rgb.2).rounded(.toNearestOrEven))
                    k += 1
                } else {
                    out[k] = UInt8(rgb.0); out[k + 1] = UInt8(rgb.1); out[k + 2] = UInt8(rgb.2)
                    k += 3
                }
            }
        }
        return out
    }

    /// Tensor values for a crop: floats, or the integers to store for integer tensors (as Float).
    public func values(_ crop: [UInt8]) -> [Float] {
        if input.modelNormalizes { return crop.map { Float($0) } }
        // NumPy's order of operations (tfalign.data.geometry.normalize): Float(1 / std) from a Double division.
        let mean = Float(input.mean), invStd = Float(1 / input.std), scale = Float(input.scale)
        return crop.map { p -> Float in
            let x = (Float(p) - mean) * invStd
            switch input.dtype {
            case .float32: return x
            case .float16: return Half.toFloat(Half.fromFloat(x))
            case .int8, .uint8:
                let q = Double((x / scale).rounded(.toNearestOrEven)) + Double(input.zeroPoint)
                return Float(min(max(q, input.dtype.minQ), input.dtype.maxQ))
            }
        }
    }

    private func sample(_ f: PixelFrame, _ x: Double, _ y: Double) -> (Double, Double, Double) {
        let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
        let fx = x - Double(x0), fy = y - Double(y0)
        var r = 0.0, g = 0.0, b = 0.0
        func add(_ ix: Int, _ iy: Int, _ wt: Double) {
            if wt == 0 { return }
            if ix < 0 || iy < 0 || ix >= f.width || iy >= f.height {
                r += wt * border; g += wt * border; b += wt * border
                return
            }
            let o = iy * f.bytesPerRow + ix * f.bytesPerPixel
            r += wt * Double(f.pixels[o + f.red])
            g += wt * Double(f.pixels[o + f.green])
            b += wt * Double(f.pixels[o + f.blue])
        }
        add(x0, y0, (1 - fx) * (1 - fy))
        add(x0 + 1, y0, fx * (1 - fy))
        add(x0, y0 + 1, (1 - fx) * fy)
        add(x0 + 1, y0 + 1, fx * fy)
        func clamp(_ v: Double) -> Double { min(max(v.rounded(.toNearestOrEven), 0), 255) }
        return (clamp(r), clamp(g), clamp(b))
    }
}

/// IEEE 754 half precision, round to nearest even (NumPy's astype(float16)); written out because `Float16` is
/// unavailable on Intel Macs, where `swift test` may run.
public enum Half {
    public static func fromFloat(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let value = bits & 0x7fff_ffff
        if value >= 0x7f80_0000 { return sign | 0x7c00 | (value > 0x7f80_0000 ? 0x200 : 0) }
        if value >= 0x4780_0000 { return sign | 0x7c00 }  // >= 65536: overflow to inf
        if value < 0x3880_0000 {  // below the smallest normal half: subnormal or zero
            let e = Int(value >> 23)
            if e < 102 { return sign }
            let m = (value & 0x7f_ffff) | 0x80_0000
            let shift = UInt32(126 - e)
            var h = m >> shift
            let rem = m & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && (h & 1) == 1) { h += 1 }
            return sign | UInt16(h)
        }
        var h = ((((value >> 23) &- 127 &+ 15)) << 10) | ((value & 0x7f_ffff) >> 13)
        let rem = value & 0x1fff
        if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) { h += 1 }  // a carry into the exponent is correct
        return sign | UInt16(h)
    }

    public static func toFloat(_ half: UInt16) -> Float {
        let sign = UInt32(half & 0x8000) << 16
        let e = UInt32((half >> 10) & 0x1f), m = UInt32(half & 0x3ff)
        switch e {
        case 0: return (sign != 0 ? -1 : 1) * Float(m) / Float(1 << 24)
        case 31: return Float(bitPattern: sign | 0x7f80_0000 | (m << 13))
        default: return Float(bitPattern: sign | ((e + 112) << 23) | (m << 13))
        }
    }
}
