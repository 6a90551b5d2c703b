/// Activation buffers for one run of a tiled segment. Buffers are allocated at the largest size the plan
/// needs and recycled for every later tile and frame, so the working set is fixed after the first tile.
final class FrameBuffer: @unchecked Sendable {
    let ptr: UnsafeMutablePointer<Float>
    let capacity: Int
    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        ptr = UnsafeMutablePointer<Float>.allocate(capacity: self.capacity)
    }
    deinit { ptr.deallocate() }
}

final class BufferPool: @unchecked Sendable {
    /// Every buffer is at least this big (the largest activation of the plan), so any free buffer fits
    /// any request and nothing fragments.
    var slotFloats: Int
    private var free: [FrameBuffer] = []
    private(set) var allocatedFloats = 0
    private(set) var live = 0
    private(set) var peakLive = 0

    init(slotFloats: Int) { self.slotFloats = slotFloats }

    func take(_ floats: Int) -> FrameBuffer {
        live += 1
        peakLive = max(peakLive, live)
        if let i = free.lastIndex(where: { $0.capacity >= floats }) {
            return free.remove(at: i)
        }
        let b = FrameBuffer(capacity: max(floats, slotFloats))
        allocatedFloats += b.capacity
        return b
    }

    func give(_ b: FrameBuffer) {
        live -= 1
        free.append(b)
    }
}

/// The previous input frames of one causal convolution (upstream's `feat_cache`, CACHE_T = 2), kept only
/// when a clip is streamed. `prev1` is the frame before the current one, `prev2` the one before that.
final class FrameCache: @unchecked Sendable {
    private(set) var prev1: FrameBuffer?
    private(set) var prev2: FrameBuffer?
    private var spare: FrameBuffer?
    private(set) var allocatedFloats = 0

    func reset() {
        if let p = prev2 { spare = spare ?? p }
        prev1 = nil
        prev2 = nil
    }

    /// Remembers a copy of `floats` values from `x` as the newest frame.
    func push(_ x: UnsafePointer<Float>, floats: Int) {
        var b: FrameBuffer
        if let p2 = prev2, p2.capacity >= floats { b = p2 } else if let s = spare, s.capacity >= floats { b = s; spare = nil } else {
            b = FrameBuffer(capacity: floats)
            allocatedFloats += b.capacity
        }
        b.ptr.update(from: x, count: floats)
        prev2 = prev1
        prev1 = b
    }

    /// Replaces `prev1` by the newest frame without shifting (used by the temporal downsampler, which keeps
    /// the last even and the last odd frame).
    func setSlot(_ slot: Int, _ x: UnsafePointer<Float>, floats: Int) {
        let old = slot == 1 ? prev1 : prev2
        let b: FrameBuffer
        if let o = old, o.capacity >= floats { b = o } else {
            b = FrameBuffer(capacity: floats)
            allocatedFloats += b.capacity
        }
        b.ptr.update(from: x, count: floats)
        if slot == 1 { prev1 = b } else { prev2 = b }
    }
}
