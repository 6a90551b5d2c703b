/// The token bookkeeping of the Qwen2.5-VL vision tower for a set of images: 2-D rope positions, the
/// window permutation and the attention segments. Pure functions of the grids (transformers
/// `vision_utils.get_vision_position_ids`, `get_vision_window_index`, `get_vision_cu_seqlens`).
///
/// Terms: a *patch* is one 14×14 `pixel_values` row; a *unit* is a 2×2 block of patches (one merged
/// output token); a *window* is `window_size / 28` × `window_size / 28` units (4×4 for the real model).
public struct VisionWindows: Sendable {
    /// Per image (t, h, w) in patches.
    public let grids: [(t: Int, h: Int, w: Int)]
    /// Patches per unit (4).
    public let unit: Int
    /// `[units]`: window order → processor-order unit index (`<case>.vision.window_index`).
    public let windowIndex: [Int]
    /// Window boundaries in patches, window order (`cu_window_seqlens`, duplicates removed).
    public let cuWindowSeqlens: [Int]
    /// Full-attention boundaries in patches: one segment per image frame (`cu_seqlens`).
    public let cuSeqlens: [Int]
    /// `[patches]` in processor order: (row, col) of each patch (`rot_pos_ids`).
    public let posH: [Int64]
    public let posW: [Int64]

    public var patchCount: Int { posH.count }
    public var unitCount: Int { windowIndex.count }

    /// - Throws: when a grid side is not a multiple of the merge size, or the window is smaller than a unit.
    public init(grids: [(t: Int, h: Int, w: Int)], spatialMergeSize m: Int, windowSize: Int, patchSize: Int) throws {
        self.grids = grids
        unit = m * m
        let vws = windowSize / m / patchSize  // units per window side
        guard vws > 0 else {
            throw QwenImageError.invalidInput("vision window_size \(windowSize) is smaller than one merged unit")
        }
        var wi: [Int] = []
        var cuw: [Int] = [0]
        var cu: [Int] = [0]
        var ph: [Int64] = [], pw: [Int64] = []
        var unitOffset = 0
        for (k, g) in grids.enumerated() {
            guard g.t > 0, g.h > 0, g.w > 0, g.h % m == 0, g.w % m == 0 else {
                throw QwenImageError.invalidInput("image \(k): grid (t, h, w) = (\(g.t), \(g.h), \(g.w)) patches; h and w "
                                                  + "must be positive multiples of the merge size \(m)")
            }
            let lh = g.h / m, lw = g.w / m
            // Upstream pads each side up to a multiple of the window, always adding padding (a whole
            // empty window when it already divides); empty windows vanish in unique_consecutive.
            let nwh = (lh + vws - lh % vws) / vws, nww = (lw + vws - lw % vws) / vws
            for t in 0..<g.t {
                for wy in 0..<nwh {
                    for wx in 0..<nww {
                        var n = 0
                        for r in (wy * vws)..<min((wy + 1) * vws, lh) {
                            for c in (wx * vws)..<min((wx + 1) * vws, lw) {
                                wi.append(unitOffset + t * lh * lw + r * lw + c)
                                n += 1
                            }
                        }
                        if n > 0 { cuw.append(cuw.last! + n * unit) }
                    }
                }
                cu.append(cu.last! + g.h * g.w)
                // Rope positions, processor (block-major) order.
                for bh in 0..<lh {
                    for bw in 0..<lw {
                        for mh in 0..<m {
                            for mw in 0..<m {
                                ph.append(Int64(bh * m + mh))
                                pw.append(Int64(bw * m + mw))
                            }
                        }
                    }
                }
            }
            unitOffset += g.t * lh * lw
        }
        windowIndex = wi
        cuWindowSeqlens = cuw
        cuSeqlens = cu
        posH = ph
        posW = pw
    }

    /// Per patch in window order, the id of its attention segment: its window (`window: true`) or its
    /// image frame. Segments are contiguous in window order, since windows never straddle images.
    public func segmentIDs(window: Bool) -> [Int32] {
        var out = [Int32](repeating: 0, count: patchCount)
        if window {
            for s in 0..<(cuWindowSeqlens.count - 1) {
                for i in cuWindowSeqlens[s]..<cuWindowSeqlens[s + 1] { out[i] = Int32(s) }
            }
        } else {
            // Image frames are whole runs of units, and the window permutation keeps each image's units
            // together, so frame boundaries in window order are the processor-order boundaries.
            for s in 0..<(cuSeqlens.count - 1) {
                for i in cuSeqlens[s]..<cuSeqlens[s + 1] { out[i] = Int32(s) }
            }
        }
        return out
    }

    /// Reorders `[patches, dim]` rows from processor order into window order, whole units at a time.
    public func toWindowOrder<T>(_ x: [T], dim: Int) -> [T] {
        precondition(x.count == patchCount * dim)
        var out = x
        let block = unit * dim
        x.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for (j, u) in windowIndex.enumerated() {
                    (d.baseAddress! + j * block).update(from: s.baseAddress! + u * block, count: block)
                }
            }
        }
        return out
    }
}
