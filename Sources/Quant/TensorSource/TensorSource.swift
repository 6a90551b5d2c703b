import Foundation
import Kernels

// A tensor source hands a model its weights by checkpoint name, the way candle's `VarBuilder` does:
// a model takes a source scoped to its own prefix (`source.prefix("model").prefix("layers").prefix(3)`)
// and asks for each tensor by the last part of its checkpoint key, with the shape its typed config
// implies. The model code is the only place that knows the names and shapes; every implementation
// answers the same requests:
//
//  * `PackTensorSource`: the tensors of a pack component (the shard is found in the manifest);
//  * `ShapeOnlySource`: no values, only checks each request against stored shapes (a checkpoint's
//    safetensors headers, or a pack manifest) and records it: the converter's plan and pre-check;
//  * `RecordingTensorSource`: values from a closure (hub layout, transformed here) or zeros, and a
//    record of every request: tests and synthetic weights.

/// How a checkpoint tensor becomes a matrix the kernels multiply with, `[rows, cols]` (pack format
/// §6.3). The layout is chosen by the code that asks for the tensor (so by name), and the checkpoint's
/// shape is then checked against `sourceShape`.
public enum MatrixLayout: Hashable, Sendable {
    /// A Linear weight `[rows, cols]`, stored as is.
    case linear(rows: Int, cols: Int)
    /// An embedding table `[rows, cols]`: stored as is, read one row at a time (so its shard stays raw
    /// in a zstd pack, FORMAT.md §3.2.1).
    case embedding(rows: Int, cols: Int)
    /// `[n, d1, d2, ...]` flattened row-major to `[n, d1·d2·...]` (the Conv3d patch embedding).
    case flattened([Int])
    /// A causal 3-D convolution `[cout, cin, 3, 3, 3]`: temporal slice `slice` as `[cout, 9·cin]`, k in
    /// (ky, kx, cin) order (`qk_conv3x3`'s channels-last implicit GEMM). Pack name: NAME.t<slice>.
    case conv3x3x3(cout: Int, cin: Int, slice: Int)
    /// A `time_conv` kernel `[cout, cin, 3, 1, 1]`: temporal slice `slice` as `[cout, cin]`. Pack name: NAME.t<slice>.
    case conv3x1x1(cout: Int, cin: Int, slice: Int)
    /// A 2-D 3×3 convolution `[cout, cin, 3, 3]` as `[cout, 9·cin]`, k in (ky, kx, cin) order.
    case conv3x3(cout: Int, cin: Int)
    /// A 1×1 (2-D) or 1×1×1 (3-D) convolution `[cout, cin, 1, ...]` (`spatialDims` ones) as `[cout, cin]`.
    case conv1x1(cout: Int, cin: Int, spatialDims: Int)

    /// The checkpoint tensor's shape.
    public var sourceShape: [Int] {
        switch self {
        case .linear(let r, let c), .embedding(let r, let c): return [r, c]
        case .flattened(let s): return s
        case .conv3x3x3(let o, let i, _): return [o, i, 3, 3, 3]
        case .conv3x1x1(let o, let i, _): return [o, i, 3, 1, 1]
        case .conv3x3(let o, let i): return [o, i, 3, 3]
        case .conv1x1(let o, let i, let d): return [o, i] + [Int](repeating: 1, count: d)
        }
    }

    /// The stored matrix `[rows, cols]`.
    public var packShape: [Int] {
        switch self {
        case .linear(let r, let c), .embedding(let r, let c): return [r, c]
        case .flattened(let s): return [s.first ?? 0, s.dropFirst().reduce(1, *)]
        case .conv3x3x3(let o, let i, _), .conv3x3(let o, let i): return [o, 9 * i]
        case .conv3x1x1(let o, let i, _), .conv1x1(let o, let i, _): return [o, i]
        }
    }

    /// Appended to the checkpoint name to make the pack name (temporal slices).
    public var packSuffix: String {
        switch self {
        case .conv3x3x3(_, _, let t), .conv3x1x1(_, _, let t): return ".t\(t)"
        default: return ""
        }
    }

    /// The temporal slice this layout takes, if any (0, 1 or 2).
    public var slice: Int? {
        switch self {
        case .conv3x3x3(_, _, let t), .conv3x1x1(_, _, let t): return t
        default: return nil
        }
    }

    public var isConvolution: Bool {
        switch self {
        case .linear, .embedding, .flattened: return false
        case .conv3x3x3, .conv3x1x1, .conv3x3, .conv1x1: return true
        }
    }

    /// Output row o of the pack matrix is source row o (dimension 0) rearranged: `out[j] = src[gather[j]]`.
    /// nil: the source row unchanged.
    public func gather() -> [Int32]? {
        switch self {
        case .linear, .embedding, .flattened, .conv1x1:
            return nil
        case .conv3x3x3(_, let cin, let t):
            // k index (ky, kx, cin) <- source index within a [cin, 3, 3, 3] row.
            var g = [Int32](repeating: 0, count: 9 * cin)
            for ky in 0..<3 { for kx in 0..<3 { for c in 0..<cin {
                g[(ky * 3 + kx) * cin + c] = Int32(((c * 3 + t) * 3 + ky) * 3 + kx)
            } } }
            return g
        case .conv3x1x1(_, let cin, let t):
            return (0..<cin).map { Int32($0 * 3 + t) }
        case .conv3x3(_, let cin):
            var g = [Int32](repeating: 0, count: 9 * cin)
            for ky in 0..<3 { for kx in 0..<3 { for c in 0..<cin { g[(ky * 3 + kx) * cin + c] = Int32(c * 9 + ky * 3 + kx) } } }
            return g
        }
    }
}

/// One request a model made of a source: the full checkpoint name and what it expects there.
public struct TensorRequest: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case matrix(MatrixLayout)
        /// A vector read as f32; the checkpoint shape (e.g. a VAE gamma `[C, 1, 1, 1]`).
        case vector([Int])
    }

    /// Checkpoint (hub) name.
    public let name: String
    public let kind: Kind

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// Pack tensor name: the checkpoint name, with `.tN` for a temporal slice.
    public var packName: String {
        if case .matrix(let l) = kind { return name + l.packSuffix }
        return name
    }

    /// `[rows, cols]` for a matrix, `[count]` for a vector.
    public var packShape: [Int] {
        switch kind {
        case .matrix(let l): return l.packShape
        case .vector(let s): return [s.reduce(1, *)]
        }
    }

    public var sourceShape: [Int] {
        switch kind {
        case .matrix(let l): return l.sourceShape
        case .vector(let s): return s
        }
    }
}

/// Where a model gets its weights (see the top of this file).
public protocol TensorSource: AnyObject {
    /// The dotted prefix this source is scoped to ("" at the root).
    var path: String { get }
    /// The matrix `path.name`, shaped by `layout`; throws naming the tensor when it is missing or
    /// its shape disagrees with the layout.
    func matrix(_ name: String, _ layout: MatrixLayout) throws -> Weight
    /// The tensor `path.name` as f32; `shape` is its checkpoint shape.
    func vector(_ name: String, shape: [Int]) throws -> [Float]
    /// The same source scoped to `path.name` (candle's `pp`).
    func prefix(_ name: String) -> Self
    /// A hint: the tensors under this prefix will be asked for soon (a pack loads their shards in the
    /// background).
    func prefetch()
    /// A cheaper hint for what comes after the prefetched tensors: the storage starts reading their
    /// files into the page cache (no memory of the process, nothing mapped or decompressed). On a cold
    /// cache this keeps more reads in flight than one prefetch alone.
    func readAhead()
    /// The caller is done with the tensors under this prefix (a pack drops their shards' pages or
    /// returns their buffers). Weights already handed out stay valid.
    func release()
}

extension TensorSource {
    public func prefetch() {}
    public func readAhead() {}
    public func release() {}

    /// A 1-D tensor of `count` values.
    public func vector(_ name: String, count: Int) throws -> [Float] { try vector(name, shape: [count]) }
    /// Scoped to `path.index` (a layer or block number).
    public func prefix(_ index: Int) -> Self { prefix(String(index)) }
    /// `path.name`.
    public func fullName(_ name: String) -> String { TensorPath.join(path, name) }
}

public enum TensorPath {
    public static func join(_ prefix: String, _ name: String) -> String {
        prefix.isEmpty ? name : name.isEmpty ? prefix : prefix + "." + name
    }

    /// Whether `name` lies under `prefix` ("" holds everything).
    public static func contains(_ prefix: String, _ name: String) -> Bool {
        prefix.isEmpty || name == prefix || (name.hasPrefix(prefix) && name.dropFirst(prefix.count).first == ".")
    }
}

// MARK: - Placeholder matrices

/// Read-only anonymous pages that are never written: they read as zeros and cost no memory (every
/// page maps the kernel's shared zero page), so a shape-only build of the 7B model's 2 GB embedding
/// table costs nothing. `MAP_NORESERVE` keeps them out of the commit charge.
final class ZeroPages: @unchecked Sendable {
    let base: UnsafeRawPointer?
    let bytes: Int

    init(bytes: Int) {
        self.bytes = max(bytes, 1)
        let p = mmap(nil, self.bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        base = p == MAP_FAILED ? nil : UnsafeRawPointer(p)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), bytes) } }
}

extension Weight {
    /// An f32 zero matrix `[rows, cols]` that costs no memory (shape-only builds). Throws only when the
    /// address space cannot be reserved.
    static func placeholder(_ name: String, rows: Int, cols: Int) throws -> Weight {
        let pages = ZeroPages(bytes: qk_weight_bytes(QK_F32, 0, Int64(rows), Int64(cols)))
        guard let base = pages.base else {
            throw QuantError.unsupported("tensor \(name): cannot reserve \(pages.bytes) bytes of address space for a placeholder")
        }
        return Weight(name: name, raw: qk_weight(scheme: QK_F32, group: 0, n: Int64(rows), k: Int64(cols), data: base), owner: pages)
    }
}
