import AVFoundation
import SwiftUI
import TFAlignCore

/// State shared by the views: the model list, the selected model / compute units, the latest frame result.
@MainActor
final class AppModel: ObservableObject {
    @Published var models: [ModelEntry] = []
    @Published var selected: ModelEntry? { didSet { reload() } }
    @Published var units: ComputeUnits = .all { didSet { reload() } }
    @Published var smoothing = true {
        didSet { let on = smoothing, p = processor; p.queue.async { p.smoothing = on } }
    }
    @Published var frame = FrameResult()
    @Published var status = ""
    let camera = CameraController()
    nonisolated let processor = FrameProcessor()

    init() {
        let (models, problems) = ModelStore.list()
        self.models = models
        status = problems.joined(separator: "\n")
        processor.onResult = { [weak self] r in self?.frame = r }
        selected = models.first
        reload()  // property observers do not run for assignments inside init
        if let name = UserDefaults.standard.string(forKey: "benchmark") {  // launch argument: -benchmark NAME
            if let entry = models.first(where: { $0.name == name }) { benchmark(entry) } else {
                status = "benchmark: no model '\(name)' in Models; have \(models.map(\.name))"
            }
        }
    }

    func startCamera() {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            Task { @MainActor in
                guard granted else { self.status = "camera access denied (Settings → tfalign demo)"; return }
                do { try self.camera.start(processor: self.processor) } catch { self.status = "\(error)" }
            }
        }
    }

    /// Loads the selected model for the selected compute units, then hands it to the capture queue.
    private func reload() {
        guard let entry = selected else { return }
        let units = self.units
        Task {
            do {
                let compiled = try await ModelStore.compiled(entry)
                let predictor = try LandmarkPredictor(entry: entry, compiledURL: compiled, units: units)
                let p = processor
                p.queue.async { p.predictor = predictor }
                status = ""
            } catch {
                status = "\(entry.name) on \(units.rawValue): \(error)"
            }
        }
    }

    func benchmark(_ entry: ModelEntry) {
        status = "benchmark: compiling \(entry.name)"
        Task.detached(priority: .userInitiated) {
            let message: String
            do {
                let url = try await BenchmarkController.run(entry) { p in Task { @MainActor in self.status = p } }
                message = "benchmark written: Documents/benchmarks/\(url.lastPathComponent)"
            } catch {
                message = "benchmark failed: \(error)"
            }
            await MainActor.run { self.status = message }
        }
    }
}

struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }

    func makeUIView(context: Context) -> PreviewView {
        let v = PreviewView()
        v.previewLayer.session = session
        v.previewLayer.videoGravity = .resizeAspectFill
        return v
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}
}

/// Landmarks and face box over the preview: frame pixels map to the view like `.resizeAspectFill`; the front
/// camera preview is mirrored, so are the points.
struct Overlay: View {
    let frame: FrameResult

    var body: some View {
        Canvas { ctx, size in
            guard frame.width > 0, frame.height > 0 else { return }
            let scale = max(size.width / CGFloat(frame.width), size.height / CGFloat(frame.height))
            let dx = (size.width - CGFloat(frame.width) * scale) / 2, dy = (size.height - CGFloat(frame.height) * scale) / 2
            // Pixel centres are at integer coordinates: pixel x covers [x - 0.5, x + 0.5].
            func vx(_ x: Double) -> CGFloat { size.width - ((CGFloat(x) + 0.5) * scale + dx) }
            func vy(_ y: Double) -> CGFloat { (CGFloat(y) + 0.5) * scale + dy }
            if let b = frame.box {
                let r = CGRect(x: vx(b.x + b.w - 0.5), y: vy(b.y - 0.5), width: CGFloat(b.w) * scale,
                               height: CGFloat(b.h) * scale)
                ctx.stroke(Path(r), with: .color(.yellow), lineWidth: 2)
            }
            if let p = frame.points {
                for k in 0..<(p.count / 2) {
                    let c = CGPoint(x: vx(p[2 * k]), y: vy(p[2 * k + 1]))
                    ctx.fill(Path(ellipseIn: CGRect(x: c.x - 2.5, y: c.y - 2.5, width: 5, height: 5)), with: .color(.green))
                }
            }
        }
        .allowsHitTesting(false)
    }
}

struct ContentView: View {
    @StateObject private var app = AppModel()

    var body: some View {
        ZStack(alignment: .bottom) {
            CameraPreview(session: app.camera.session).ignoresSafeArea()
            Overlay(frame: app.frame).ignoresSafeArea()
            VStack(alignment: .leading, spacing: 6) {
                Text(app.frame.latencyText).font(.system(.caption, design: .monospaced))
                Text(app.frame.error ?? String(format: "detect %.1f ms", app.frame.detectMs))
                    .font(.system(.caption, design: .monospaced))
                Picker("Model", selection: $app.selected) {
                    ForEach(app.models) { Text($0.name).tag(Optional($0)) }
                }
                Picker("Compute units", selection: $app.units) {
                    ForEach(ComputeUnits.allCases) { Text($0.rawValue).tag($0) }
                }
                .pickerStyle(.segmented)
                HStack {
                    Toggle("one-euro", isOn: $app.smoothing).fixedSize()
                    Spacer()
                    Button("Benchmark") { if let m = app.selected { app.benchmark(m) } }
                        .disabled(app.selected == nil)
                }
                if !app.status.isEmpty { Text(app.status).font(.caption2) }
            }
            .foregroundColor(.white)
            .padding()
            .background(Color.black.opacity(0.6))
        }
        .onAppear { app.startCamera() }
        .onDisappear { app.camera.stop() }
    }
}
