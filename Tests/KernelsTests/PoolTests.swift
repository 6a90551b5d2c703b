import Foundation
import Kernels
import Testing

/// Counters indexed by task; each task writes only its own slot, so no atomics are needed.
private final class Slots {
    let count: Int
    let hits: UnsafeMutablePointer<Int64>
    let tids: UnsafeMutablePointer<Int64>
    var inner: Int64 = 0
    init(_ count: Int) {
        self.count = count
        hits = .allocate(capacity: count); hits.initialize(repeating: 0, count: count)
        tids = .allocate(capacity: count); tids.initialize(repeating: -1, count: count)
    }
    deinit { hits.deallocate(); tids.deallocate() }
}

private func run(_ ntasks: Int, _ slots: Slots) {
    qk_parallel_for(Int64(ntasks), { ctx, task, tid in
        let s = Unmanaged<Slots>.fromOpaque(ctx!).takeUnretainedValue()
        s.hits[Int(task)] += 1
        s.tids[Int(task)] = Int64(tid)
    }, Unmanaged.passUnretained(slots).toOpaque())
}

@Suite("pool", .serialized) struct PoolTests {
    @Test("every task runs exactly once with a thread id below the thread count (many tiny calls)")
    func tinyCalls() {
        withKernelState {
            let saved = qk_get_threads()
            defer { qk_set_threads(saved) }
            var rng = MMRng(1)
            for t: Int32 in [1, 2, 3, 4] {
                qk_set_threads(t)
                #expect(qk_get_threads() == t)
                for _ in 0..<1500 {
                    let n = Int(rng.next() % 40) + 1
                    let s = Slots(n)
                    run(n, s)
                    for i in 0..<n {
                        #expect(s.hits[i] == 1, "task \(i) of \(n) ran \(s.hits[i]) times")
                        #expect(s.tids[i] >= 0 && s.tids[i] < Int64(t))
                    }
                }
            }
            let big = Slots(200_000)
            run(200_000, big)
            #expect((0..<200_000).allSatisfy { big.hits[$0] == 1 })
        }
    }

    @Test("nested calls run serially on the calling thread")
    func nested() {
        withKernelState {
            let saved = qk_get_threads()
            defer { qk_set_threads(saved) }
            qk_set_threads(2)
            let outer = 50, inner = 7
            let s = Slots(outer * inner)
            s.inner = Int64(inner)
            qk_parallel_for(Int64(outer), { ctx, task, tid in
                let s = Unmanaged<Slots>.fromOpaque(ctx!).takeUnretainedValue()
                // the nested call must see the same thread id and finish before returning
                var pack: (UnsafeMutableRawPointer, Int64, Int32) = (ctx!, task, tid)
                withUnsafeMutablePointer(to: &pack) { p in
                    qk_parallel_for(s.inner, { ctx2, task2, tid2 in
                        let (c, outerTask, outerTid) = ctx2!.assumingMemoryBound(to: (UnsafeMutableRawPointer, Int64, Int32).self).pointee
                        let s = Unmanaged<Slots>.fromOpaque(c).takeUnretainedValue()
                        let slot = Int(outerTask * s.inner + task2)
                        s.hits[slot] += 1
                        s.tids[slot] = tid2 == outerTid ? 1 : 0
                    }, p)
                }
            }, Unmanaged.passUnretained(s).toOpaque())
            for i in 0..<(outer * inner) {
                #expect(s.hits[i] == 1)
                #expect(s.tids[i] == 1, "nested task \(i) ran on another thread id")
            }
        }
    }

    @Test("concurrent top-level callers are serialized and all complete")
    func concurrentCallers() async {
        await withTaskGroup(of: Bool.self) { group in
            for c in 0..<6 {
                group.addTask {
                    var ok = true
                    for i in 0..<300 {
                        let n = (c * 7 + i) % 50 + 1
                        let s = Slots(n)
                        run(n, s)
                        ok = ok && (0..<n).allSatisfy { s.hits[$0] == 1 }
                    }
                    return ok
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    @Test("thread scratch is 64-byte aligned and keeps its contents while it does not grow")
    func scratch() {
        // The last two thread ids: no pool in the test process has that many threads, so no kernel task of a
        // test running meanwhile (convolutions take thread 0's and 1's scratch) can write into these.
        let p = qk_thread_scratch(255, 1000)!
        #expect(Int(bitPattern: p) % 64 == 0)
        p.storeBytes(of: 0x1234_5678, as: UInt32.self)
        let q = qk_thread_scratch(255, 500)!
        #expect(p == q && q.load(as: UInt32.self) == 0x1234_5678)
        let r = qk_thread_scratch(254, 1 << 20)!
        #expect(Int(bitPattern: r) % 64 == 0)
    }

    @Test("tier selection: names, QK_ISA tiers, unsupported tiers refused")
    func tiers() {
        withKernelState {
            let saved = String(cString: qk_isa_name())
            defer { _ = qk_set_isa(saved) }
            #expect(qk_set_isa("ref") == 0 && String(cString: qk_isa_name()) == "ref")
            #expect(qk_set_isa("bogus") == -1)
            for (name, tier) in [("avx2", QK_TIER_AVX2), ("avxvnni", QK_TIER_AVXVNNI), ("avx512", QK_TIER_AVX512),
                                 ("neon", QK_TIER_NEON), ("dotprod", QK_TIER_DOTPROD), ("i8mm", QK_TIER_I8MM)] {
                #expect((qk_set_isa(name) == 0) == (qk_tier_supported(tier) != 0), "\(name)")
                if qk_tier_supported(tier) != 0 { #expect(qk_tier_current() == tier) }
            }
        }
    }
}
