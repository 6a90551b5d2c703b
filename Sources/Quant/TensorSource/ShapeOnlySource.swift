import Foundation

/// A source with shapes and no values: each request is checked against the stored shapes and recorded,
/// and a zero placeholder is handed back, so building a network against it lists every tensor the
/// network reads. Over a checkpoint's safetensors headers this is the converter's plan and pre-check
/// (requests are checked against checkpoint names and shapes); over a pack manifest it is the check a
/// model runs when it opens a pack (pack names and shapes). Problems are collected, not thrown, so the
/// caller reports the first one the network met, with the count of the others.
public final class ShapeOnlySource: TensorSource, @unchecked Sendable {
    public enum Naming: Sendable {
        /// Requests are checked under their checkpoint names against checkpoint shapes.
        case checkpoint
        /// Requests are checked under their pack names against pack shapes.
        case pack
    }

    public struct Problem: Sendable, Equatable {
        public let name: String
        public let message: String
    }

    final class Log: @unchecked Sendable {
        let stored: [String: [Int]]
        let naming: Naming
        let location: String
        var requests: [TensorRequest] = []
        var seen = Set<TensorRequest>()
        var problems: [Problem] = []
        var problemNames = Set<String>()
        let lock = NSLock()

        init(stored: [String: [Int]], naming: Naming, location: String) {
            self.stored = stored
            self.naming = naming
            self.location = location
        }

        func record(_ r: TensorRequest) {
            lock.lock(); defer { lock.unlock() }
            if seen.insert(r).inserted { requests.append(r) }
            let key = naming == .checkpoint ? r.name : r.packName
            let want = naming == .checkpoint ? r.sourceShape : r.packShape
            guard !problemNames.contains(key) else { return }
            if let found = stored[key] {
                // A pack stores a vector flat ([C] for a gamma [C, 1, 1, 1]); everything else must match exactly.
                let fits = naming == .pack && !r.isMatrix ? found.reduce(1, *) == want.reduce(1, *) : found == want
                if !fits {
                    add(Problem(name: key, message: "expected shape \(want), found \(found) (in \(location); shapes follow config.json)"))
                }
            } else {
                add(Problem(name: key, message: "missing from \(location) (config.json implies shape \(want))"))
            }
        }

        private func add(_ p: Problem) {
            problemNames.insert(p.name)
            problems.append(p)
        }
    }

    let log: Log
    public let path: String

    /// - Parameters:
    ///   - shapes: stored tensors by name (checkpoint names for `.checkpoint`, pack names for `.pack`).
    ///   - location: the folder named in messages.
    public init(shapes: [String: [Int]], naming: Naming, location: String) {
        log = Log(stored: shapes, naming: naming, location: location)
        path = ""
    }

    /// Checks requests against a pack component's manifest (no shard is opened).
    public convenience init(pack component: PackComponent) {
        var shapes: [String: [Int]] = [:]
        for s in component.manifest.shards { for t in s.tensors { shapes[t.name] = t.shape } }
        self.init(shapes: shapes, naming: .pack, location: "pack component \(component.folder.path)")
    }

    init(log: Log, path: String) {
        self.log = log
        self.path = path
    }

    public func matrix(_ name: String, _ layout: MatrixLayout) throws -> Weight {
        let r = TensorRequest(name: fullName(name), kind: .matrix(layout))
        log.record(r)
        let s = layout.packShape
        return try Weight.placeholder(r.packName, rows: s[0], cols: s[1])
    }

    public func vector(_ name: String, shape: [Int]) throws -> [Float] {
        log.record(TensorRequest(name: fullName(name), kind: .vector(shape)))
        return [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public func prefix(_ name: String) -> ShapeOnlySource { ShapeOnlySource(log: log, path: fullName(name)) }

    /// Every distinct request, in the order made.
    public var requests: [TensorRequest] {
        log.lock.lock(); defer { log.lock.unlock() }
        return log.requests
    }

    /// Missing tensors and shape mismatches, in the order the network met them.
    public var problems: [Problem] {
        log.lock.lock(); defer { log.lock.unlock() }
        return log.problems
    }

    /// Throws the first problem the network met (with how many others there are).
    public func throwFirstProblem() throws {
        let p = problems
        guard let first = p.first else { return }
        let more = p.count > 1 ? " (and \(p.count - 1) more problem\(p.count > 2 ? "s" : ""))" : ""
        throw QuantError.tensor(name: first.name, message: first.message + more)
    }
}

extension TensorRequest {
    public var isMatrix: Bool {
        if case .matrix = kind { return true }
        return false
    }
}
