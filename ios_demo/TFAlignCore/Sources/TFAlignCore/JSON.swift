import Foundation

/// A contract (or golden file) that cannot be used: the message names the file and the field.
public struct ContractError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Typed access to parsed JSON with errors naming the file and the field path (e.g. `outputs[0].dtype`).
public struct JSONNode {
    public let value: Any?
    public let source: String
    public let path: String

    public init(value: Any?, source: String, path: String = "") {
        self.value = value
        self.source = source
        self.path = path
    }

    /// Parses `data`; malformed JSON is reported with the file name.
    public static func parse(_ data: Data, source: String) throws -> JSONNode {
        do {
            let v = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return JSONNode(value: v, source: source)
        } catch {
            throw ContractError("\(source): invalid JSON (\(error.localizedDescription))")
        }
    }

    private func fail(_ what: String) -> ContractError { ContractError("\(source): \(path) \(what)") }

    private func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private var describe: String {
        switch value {
        case nil, is NSNull: return "null"
        case let s as String: return "\"\(s)\""
        case is [String: Any]: return "an object"
        case is [Any]: return "an array"
        default: return "\(value!)"
        }
    }

    public func has(_ key: String) -> Bool {
        guard let m = value as? [String: Any], let v = m[key] else { return false }
        return !(v is NSNull)
    }

    public func get(_ key: String) throws -> JSONNode {
        guard let m = value as? [String: Any] else { throw fail("must be an object, got \(describe)") }
        guard let v = m[key] else { throw ContractError("\(source): missing required field \(childPath(key))") }
        return JSONNode(value: v, source: source, path: childPath(key))
    }

    public func opt(_ key: String) throws -> JSONNode? { try has(key) ? get(key) : nil }

    public func list() throws -> [JSONNode] {
        guard let l = value as? [Any] else { throw fail("must be an array, got \(describe)") }
        return l.enumerated().map { JSONNode(value: $0.element, source: source, path: "\(path)[\($0.offset)]") }
    }

    public func string() throws -> String {
        guard let s = value as? String else { throw fail("must be a string, got \(describe)") }
        return s
    }

    public func double() throws -> Double {
        // JSONSerialization gives NSNumber for booleans too: refuse them explicitly.
        guard let n = value as? NSNumber, CFGetTypeID(n) != CFBooleanGetTypeID() else {
            throw fail("must be a number, got \(describe)")
        }
        return n.doubleValue
    }

    public func int() throws -> Int {
        let d = try double()
        guard d == d.rounded(), abs(d) <= Double(Int32.max) else { throw fail("must be an integer, got \(describe)") }
        return Int(d)
    }

    public func positiveInt() throws -> Int {
        let i = try int()
        guard i >= 1 else { throw fail("must be >= 1, got \(i)") }
        return i
    }

    public func positiveDouble() throws -> Double {
        let d = try double()
        guard d > 0, d.isFinite else { throw fail("must be > 0, got \(d)") }
        return d
    }

    /// One of `allowed`; the error lists them.
    public func oneOf(_ allowed: [String]) throws -> String {
        let s = try string()
        guard allowed.contains(s) else {
            throw fail("is \"\(s)\"; expected one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        return s
    }

    public func doubles() throws -> [Double] { try list().map { try $0.double() } }
    public func ints() throws -> [Int] { try list().map { try $0.int() } }
}
