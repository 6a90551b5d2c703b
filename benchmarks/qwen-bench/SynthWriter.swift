import Foundation
import Quant

/// Writes a bf16 safetensors file of random tensors without holding it in memory: the header first,
/// then fixed-size chunks generated independently (seeded by tensor and chunk index, so the output
/// does not depend on the thread count) and written with pwrite by `threads` workers.
final class SynthWriter: @unchecked Sendable {
    let seed: UInt64
    let threads: Int
    static let chunkElements = 4 << 20   // 8 MiB of bf16 per task

    init(seed: UInt64, threads: Int) {
        self.seed = seed
        self.threads = max(1, threads)
    }

    func write(_ tensors: [SynthTensor], to url: URL, label: String) throws {
        // Header: {"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {"format": "pt"}}.
        var entries: [String] = []
        var offsets: [Int] = []
        var off = 0
        for t in tensors {
            let end = off + t.count * 2
            entries.append("\"\(t.name)\":{\"dtype\":\"BF16\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(off),\(end)]}")
            offsets.append(off)
            off = end
        }
        var header = "{\"__metadata__\":{\"format\":\"pt\"}," + entries.joined(separator: ",") + "}"
        while (header.utf8.count + 8) % 8 != 0 { header += " " }
        let headerBytes = Array(header.utf8)
        let dataStart = 8 + headerBytes.count
        let tmp = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".tmp")
        let fd = open(tmp.path, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
        guard fd >= 0 else { throw BenchError.bad("\(tmp.path): cannot create (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var lenLE = UInt64(headerBytes.count).littleEndian
        var prefix = Data(bytes: &lenLE, count: 8)
        prefix.append(contentsOf: headerBytes)
        try pwriteAll(fd, prefix, at: 0, path: tmp.path)
        guard ftruncate(fd, off_t(dataStart + off)) == 0 else {
            throw BenchError.bad("\(tmp.path): cannot size to \(dataStart + off) bytes (\(String(cString: strerror(errno))))")
        }

        // Task list: (tensor index, first element, element count).
        var tasks: [(Int, Int, Int)] = []
        for (i, t) in tensors.enumerated() {
            var e = 0
            while e < t.count {
                let n = min(Self.chunkElements, t.count - e)
                tasks.append((i, e, n))
                e += n
            }
        }
        let progress = Progress(label, total: off, unit: .bytes)
        let queue = WorkQueue(count: tasks.count)
        let path = tmp.path
        let taskList = tasks, offsetList = offsets
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let buf = UnsafeMutablePointer<UInt16>.allocate(capacity: Self.chunkElements)
            defer { buf.deallocate() }
            while let mine = queue.take() {
                let (ti, e0, n) = taskList[mine]
                self.fill(buf, tensor: tensors[ti], index: ti, first: e0, count: n)
                let byteOff = dataStart + offsetList[ti] + e0 * 2
                var done = 0
                let total = n * 2
                let raw = UnsafeRawPointer(buf)
                while done < total {
                    let w = pwrite(fd, raw + done, total - done, off_t(byteOff + done))
                    if w <= 0 {
                        queue.fail(BenchError.bad("\(path): write failed (\(String(cString: strerror(errno))))"))
                        return
                    }
                    done += w
                }
                progress.advance(total)
            }
        }
        progress.finish()
        if let f = queue.failure { try? FileManager.default.removeItem(at: tmp); throw f }
        guard rename(tmp.path, url.path) == 0 else {
            throw BenchError.bad("cannot rename \(tmp.path) to \(url.path)")
        }
    }

    /// Fills `count` bf16 values of tensor `t` starting at element `first`.
    private func fill(_ out: UnsafeMutablePointer<UInt16>, tensor t: SynthTensor, index: Int, first: Int, count: Int) {
        // splitmix64 seeded per (tensor, chunk); the chunk grid is fixed, so results are reproducible.
        var state = seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(first / Self.chunkElements) &* 0xBF58_476D_1CE4_E5B9)
        let (mean, std): (Float, Float)
        switch t.initial {
        case .normal(let s): (mean, std) = (0, s)
        case .ones(let j): (mean, std) = (1, j)
        }
        // Irwin-Hall(4) of 16-bit uniforms: mean 4 * 32767.5, sd 65536 * sqrt(4/12).
        let k = std / (65536 * (1.0 / 3.0 as Float).squareRoot())
        let c: Float = 4 * 32767.5
        let last = t.shape.last ?? 1
        let scaled = !t.columnScale.isEmpty
        var colScale = [Float](repeating: 1, count: scaled ? last : 0)
        for (c, m) in t.columnScale where c < last { colScale[c] = m }
        for i in 0..<count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let s = Float((z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48))
            var v = mean + (s - c) * k
            if scaled { v *= colScale[(first + i) % last] }
            let bits = v.bitPattern
            out[i] = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
        }
    }
}

func pwriteAll(_ fd: Int32, _ data: Data, at offset: Int, path: String) throws {
    try data.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
        var done = 0
        while done < p.count {
            let w = pwrite(fd, p.baseAddress! + done, p.count - done, off_t(offset + done))
            if w <= 0 { throw BenchError.bad("\(path): write failed (\(String(cString: strerror(errno))))") }
            done += w
        }
    }
}
