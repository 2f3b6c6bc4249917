import AVFoundation
import Foundation
import TFAlignCore
import Vision

/// What the overlay draws for one frame; coordinates are pixels of the upright frame.
struct FrameResult {
    var width = 0, height = 0
    var box: FaceBox?
    var points: [Double]?
    var detectMs = 0.0
    var latencyText = "no frames yet"
    var error: String?
}

/// Camera frame → Vision face box → calibrated box → landmarks → one-euro smoothing. Latency stages (TFAlignCore
/// `RollingLatency`): pre = crop + input, inference = CoreML prediction, post = decoding + smoothing; Vision's
/// detection is reported on its own. Its state is touched only on `queue` (the capture queue; the UI changes
/// settings with `queue.async`), hence `@unchecked Sendable`.
final class FrameProcessor: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    let queue = DispatchQueue(label: "tfalign.frames")
    var predictor: LandmarkPredictor? {
        didSet { smoother.reset(); latency = RollingLatency(capacity: 60) }
    }
    var smoothing = true
    var calibration = BoxCalibration()
    var onResult: (FrameResult) -> Void = { _ in }
    private var smoother = LandmarkSmoother()
    private var latency = RollingLatency(capacity: 60)
    private let faceRequest = VNDetectFaceRectanglesRequest()

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let pb = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        let t = CMSampleBufferGetPresentationTimeStamp(sampleBuffer).seconds
        var result = FrameResult(width: CVPixelBufferGetWidth(pb), height: CVPixelBufferGetHeight(pb))
        do {
            let t0 = DispatchTime.now().uptimeNanoseconds
            result.box = try detect(pb)
            result.detectMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            if let box = result.box, let predictor {
                let e = try withFrame(pb) { try predictor.estimate($0, box: calibration.apply(box)) }
                let t1 = DispatchTime.now().uptimeNanoseconds
                result.points = smoothing ? smoother.smooth(t: t, points: e.points) : e.points
                let smoothMs = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e6
                latency.add(preMs: e.preMs, inferenceMs: e.inferenceMs, postMs: e.postMs + smoothMs)
            } else {
                smoother.reset()
            }
        } catch {
            result.error = "\(error)"
        }
        result.latencyText = latency.overlayText
        let r = result
        DispatchQueue.main.async { self.onResult(r) }
    }

    /// The largest face, in pixels of the frame (Vision's boxes are normalised with the origin at the bottom left).
    private func detect(_ pb: CVPixelBuffer) throws -> FaceBox? {
        try VNImageRequestHandler(cvPixelBuffer: pb, orientation: .up).perform([faceRequest])
        guard let face = (faceRequest.results ?? []).max(by: {
            $0.boundingBox.width * $0.boundingBox.height < $1.boundingBox.width * $1.boundingBox.height
        }) else { return nil }
        let w = Double(CVPixelBufferGetWidth(pb)), h = Double(CVPixelBufferGetHeight(pb))
        let bb = face.boundingBox
        guard bb.width > 0, bb.height > 0 else { return nil }
        return FaceBox(x: bb.minX * w, y: (1 - bb.maxY) * h, w: bb.width * w, h: bb.height * h)
    }

    private func withFrame<T>(_ pb: CVPixelBuffer, _ body: (PixelFrame) throws -> T) throws -> T {
        CVPixelBufferLockBaseAddress(pb, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(pb, .readOnly) }
        guard CVPixelBufferGetPixelFormatType(pb) == kCVPixelFormatType_32BGRA,
              let base = CVPixelBufferGetBaseAddress(pb) else {
            throw ContractError("camera frame is not 32BGRA")
        }
        let row = CVPixelBufferGetBytesPerRow(pb), height = CVPixelBufferGetHeight(pb)
        let bytes = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: row * height)
        return try body(PixelFrame(pixels: bytes, width: CVPixelBufferGetWidth(pb), height: height, bytesPerRow: row))
    }
}

/// Front camera, BGRA frames rotated upright (portrait), delivered to a `FrameProcessor`.
final class CameraController {
    let session = AVCaptureSession()

    func start(processor: FrameProcessor) throws {
        session.beginConfiguration()
        session.sessionPreset = .hd1280x720
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .front) else {
            throw ContractError("no front camera")
        }
        let input = try AVCaptureDeviceInput(device: device)
        if session.canAddInput(input) { session.addInput(input) }
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(processor, queue: processor.queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        if let connection = output.connection(with: .video) {
            // Upright (portrait) frames: the crop math and Vision then need no orientation bookkeeping.
            if #available(iOS 17.0, *) {
                if connection.isVideoRotationAngleSupported(90) { connection.videoRotationAngle = 90 }
            } else if connection.isVideoOrientationSupported {
                connection.videoOrientation = .portrait
            }
        }
        session.commitConfiguration()
        DispatchQueue.global(qos: .userInitiated).async { self.session.startRunning() }
    }

    func stop() { session.stopRunning() }
}
