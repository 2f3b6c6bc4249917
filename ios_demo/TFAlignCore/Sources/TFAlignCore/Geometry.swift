import Foundation

/// An axis-aligned face box in image pixels (pixel centres at integer coordinates).
public struct FaceBox: Equatable {
    public let x: Double, y: Double, w: Double, h: Double

    public init(x: Double, y: Double, w: Double, h: Double) {
        precondition(w > 0 && h > 0, "face box must have positive width and height, got w=\(w) h=\(h)")
        self.x = x; self.y = y; self.w = w; self.h = h
    }

    public var centerX: Double { x + 0.5 * w }
    public var centerY: Double { y + 0.5 * h }
}

/// Maps a detector's box (Vision's) to the box the model was trained on (tight box of the scheme's points):
/// the centre moves by (shiftX, shiftY) × the larger side and both sides scale by `scale`. Identity by default.
public struct BoxCalibration: Equatable {
    public let scale: Double, shiftX: Double, shiftY: Double

    public init(scale: Double = 1, shiftX: Double = 0, shiftY: Double = 0) {
        self.scale = scale; self.shiftX = shiftX; self.shiftY = shiftY
    }

    public func apply(_ box: FaceBox) -> FaceBox {
        let size = max(box.w, box.h)
        let cx = box.centerX + shiftX * size, cy = box.centerY + shiftY * size
        let w = box.w * scale, h = box.h * scale
        return FaceBox(x: cx - 0.5 * w, y: cy - 0.5 * h, w: w, h: h)
    }
}

/// The square crop in image pixels. Crop pixel j of an output W wide has its centre at image
/// x = cx + (j + 0.5 - W / 2) × side / W, the mapping of `tfalign.data.geometry`.
public struct CropWindow: Equatable {
    public let cx: Double, cy: Double, side: Double

    public init(cx: Double, cy: Double, side: Double) {
        self.cx = cx; self.cy = cy; self.side = side
    }

    public init(box: FaceBox, crop: CropSpec) {
        let side = crop.scale * max(box.w, box.h)
        self.init(cx: box.centerX + crop.shiftX * side, cy: box.centerY + crop.shiftY * side, side: side)
    }

    public func sourceX(_ j: Int, width: Int) -> Double { cx + (Double(j) + 0.5 - 0.5 * Double(width)) * side / Double(width) }
    public func sourceY(_ i: Int, height: Int) -> Double { cy + (Double(i) + 0.5 - 0.5 * Double(height)) * side / Double(height) }

    /// Normalised crop coordinate (per `origin`) → image pixel coordinate.
    public func imageX(_ u: Double, width: Int, origin: Origin) -> Double {
        cx + ((origin == .center ? u + 0.5 / Double(width) : u) - 0.5) * side
    }

    public func imageY(_ v: Double, height: Int, origin: Origin) -> Double {
        cy + ((origin == .center ? v + 0.5 / Double(height) : v) - 0.5) * side
    }
}
