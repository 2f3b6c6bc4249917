import CoreML
import Foundation
import TFAlignCore

/// A model bundled in Models/: NAME.mlpackage with its NAME.contract.json (copied in by scripts/copy_models.sh).
struct ModelEntry: Identifiable, Hashable {
    let name: String
    let packageURL: URL
    let contractURL: URL
    let contract: ModelContract

    var id: String { name }
    static func == (a: ModelEntry, b: ModelEntry) -> Bool { a.name == b.name }
    func hash(into h: inout Hasher) { h.combine(name) }
}

enum ModelStore {
    /// Usable models, and one message per contract that could not be used (shown, not hidden).
    static func list(bundle: Bundle = .main) -> (models: [ModelEntry], problems: [String]) {
        guard let dir = bundle.url(forResource: "Models", withExtension: nil),
              let files = try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil) else {
            return ([], ["no Models folder in the app: run scripts/copy_models.sh (see README)"])
        }
        var models: [ModelEntry] = [], problems: [String] = []
        for url in files.filter({ $0.lastPathComponent.hasSuffix(".contract.json") }).sorted(by: { $0.path < $1.path }) {
            let name = String(url.lastPathComponent.dropLast(".contract.json".count))
            let package = dir.appendingPathComponent("\(name).mlpackage")
            guard FileManager.default.fileExists(atPath: package.path) else {
                problems.append("Models/\(url.lastPathComponent): no \(name).mlpackage beside it")
                continue
            }
            do {
                models.append(ModelEntry(name: name, packageURL: package, contractURL: url,
                                         contract: try ModelContract.load(url)))
            } catch {
                problems.append("\(error)")
            }
        }
        return (models, problems)
    }

    /// Compiles the .mlpackage once per content (keyed by the weights' SHA-256) into Application Support.
    static func compiled(_ entry: ModelEntry) async throws -> URL {
        let sha = try SHA256Hex.ofModel(at: entry.packageURL)
        let cache = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask,
                                                appropriateFor: nil, create: true)
            .appendingPathComponent("compiled", isDirectory: true)
        let target = cache.appendingPathComponent("\(entry.name)-\(sha.prefix(16)).mlmodelc")
        if FileManager.default.fileExists(atPath: target.path) { return target }
        let temporary = try await MLModel.compileModel(at: entry.packageURL)
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        _ = try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target
    }
}
