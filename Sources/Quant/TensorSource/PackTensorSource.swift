import Foundation

/// The tensors of one pack model component (`PACK/text_encoder`, `PACK/vae`, ...). A tensor's shard is
/// looked up in the manifest and opened on first use (mapped for raw shards, decompressed for zstd
/// ones), then held until `release()` on a prefix that covers it. Only the tensors asked for are
/// touched, so a still image never pages in a VAE's t0 / t1 slices.
public final class PackTensorSource: TensorSource, @unchecked Sendable {
    /// What all scopes of one component share: the open shards.
    final class Root: @unchecked Sendable {
        let component: PackComponent
        private var open: [String: PackShard] = [:]
        private let lock = NSLock()

        init(_ component: PackComponent) { self.component = component }

        func shard(_ name: String) throws -> PackShard {
            lock.lock(); defer { lock.unlock() }
            if let s = open[name] { return s }
            let s = try component.shard(name)
            open[name] = s
            return s
        }

        func close(_ name: String) {
            lock.lock()
            let s = open.removeValue(forKey: name)
            lock.unlock()
            s?.release()
        }
    }

    let root: Root
    public let path: String
    public var component: PackComponent { root.component }

    public convenience init(component: PackComponent) {
        self.init(root: Root(component), path: "")
    }

    init(root: Root, path: String) {
        self.root = root
        self.path = path
    }

    private var location: String { component.folder.path }

    private func info(_ packName: String, expecting shape: [Int]) throws -> PackTensorInfo {
        guard let info = component.tensorInfo(packName) else {
            throw QuantError.tensor(name: packName, message: "missing from pack component \(location) (expected shape "
                + "\(shape) from config.json; was the pack converted from another checkpoint, or by an older qwen-quant?)")
        }
        return info
    }

    public func matrix(_ name: String, _ layout: MatrixLayout) throws -> Weight {
        let packName = fullName(name) + layout.packSuffix
        let info = try info(packName, expecting: layout.packShape)
        guard info.layout == .qkWeight, info.shape == layout.packShape else {
            throw QuantError.tensor(name: packName, message: "expected shape \(layout.packShape) from config.json, found "
                + "\(info.layout == .qkWeight ? "" : "a dense array of shape ")\(info.shape) in \(location)")
        }
        return try root.shard(info.shard).weight(packName)
    }

    public func vector(_ name: String, shape: [Int]) throws -> [Float] {
        let packName = fullName(name)
        let count = shape.reduce(1, *)
        let info = try info(packName, expecting: [count])
        guard info.shape.reduce(1, *) == count else {
            throw QuantError.tensor(name: packName, message: "expected \(count) values from config.json, found shape \(info.shape) in \(location)")
        }
        return try root.shard(info.shard).vector(packName)
    }

    public func prefix(_ name: String) -> PackTensorSource { PackTensorSource(root: root, path: fullName(name)) }

    /// Shard records holding tensors under this prefix, in manifest order.
    public var shardRecords: [ShardRecord] {
        component.manifest.shards.filter { s in s.tensors.contains { TensorPath.contains(path, $0.name) } }
    }

    /// Whether the component holds any tensor under this prefix.
    public var isEmpty: Bool { !component.tensorNames.contains { TensorPath.contains(path, $0) } }

    /// Uncompressed payload bytes of the tensors under this prefix.
    public var tensorBytes: Int {
        component.manifest.shards.flatMap(\.tensors).filter { TensorPath.contains(path, $0.name) }.reduce(0) { $0 + $1.bytes }
    }

    public func prefetch() {
        for r in shardRecords { component.prefetch(r.name) }
    }

    public func readAhead() {
        for r in shardRecords { component.readAhead(r.name) }
    }

    public func release() {
        for r in shardRecords { root.close(r.name) }
    }
}
