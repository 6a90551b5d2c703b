import ArgumentParser
import Foundation
import Kernels
import Quant

/// `qwen-bench weights`: weight-level quantization error on trained (or any) weights: every 2-D
/// tensor is packed with the kernels' own packer (qk_weight_pack_rows) in every scheme, read back
/// with qk_weight_dequant_row, and its signal-to-noise ratio recorded, with the packer's scale
/// search on (the default) and off (plain absmax round-to-nearest).
struct WeightSNR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "Per-tensor SNR (dB) of quantize -> dequantize for every scheme on real trained weights.",
        discussion: """
        This measures the error of the weights alone, on trained weight distributions (heavier tails and
        outlier rows/columns than random weights). It says nothing direct about the end-to-end effect
        on Qwen's outputs, which also depends on the activations and on how errors add up over layers.

        Examples:
          qwen-bench weights --file minilm=/path/to/all-MiniLM-L6-v2/model.safetensors
          qwen-bench weights --file minilm=model.safetensors \\
              --file synth=/work/bench-data/synth/text_encoder/model-00001-of-00004.safetensors --limit synth=6
        """)

    @Option(name: .long, help: "LABEL=PATH of a safetensors file (repeatable).")
    var file: [String] = []

    @Option(name: .long, help: "LABEL=N: only the first N eligible tensors of that file.")
    var limit: [String] = []

    @Option(name: .long, help: "Smallest dimension a tensor must have (skips tiny ones).")
    var minDim = 32

    @Option(name: .long, help: "Skip tensors with more elements than this (the full-size embedding table).")
    var maxElements = 100_000_000

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "weights"

    @Option(name: .long, help: "Threads.")
    var threads = 2

    static let schemes: [String] = ["bf16", "f16", "q8-pc", "q8-g32", "q8-g64", "q8-g128", "q4-g32", "q4-g64", "q4-g128", "q8s", "q6s", "q5s", "q4c"]

    func run() throws {
        qk_set_threads(Int32(threads))
        var limits: [String: Int] = [:]
        for l in limit {
            let p = l.split(separator: "=", maxSplits: 1)
            guard p.count == 2, let n = Int(p[1]) else { throw ValidationError("--limit expects LABEL=N, got '\(l)'") }
            limits[String(p[0])] = n
        }
        var records: [[String: Any]] = []
        for f in file {
            let p = f.split(separator: "=", maxSplits: 1).map(String.init)
            guard p.count == 2 else { throw ValidationError("--file expects LABEL=PATH, got '\(f)'") }
            let (label, path) = (p[0], p[1])
            let st = try SafetensorsFile(path: path)
            var done = 0
            for tname in st.tensorNames {
                let info = try st.info(tname)
                guard info.shape.count == 2, info.dtype.isFloat, info.shape.allSatisfy({ $0 >= minDim }),
                      info.elementCount <= maxElements else { continue }
                if let l = limits[label], done >= l { break }
                done += 1
                let n = info.shape[0], k = info.shape[1]
                let w = try st.floats(tname)
                for s in Self.schemes {
                    let sc = try SchemeCase.parse(s)
                    var rec: [String: Any] = ["source": label, "tensor": tname, "shape": [n, k], "case": s]
                    for search in [1, 0] where search == 1 || sc.group != nil || ["q4c", "q8s", "q5s", "q6s"].contains(sc.scheme) {
                        qk_set_weight_scale_search(Int32(search))
                        rec[search == 1 ? "snr_db" : "snr_db_absmax"] = try Self.snr(w, n: n, k: k, scheme: sc)
                    }
                    qk_set_weight_scale_search(1)
                    records.append(rec)
                }
                note("\(label) \(tname) [\(n), \(k)]: " + records.suffix(Self.schemes.count)
                    .map { "\($0["case"]!)=\(String(format: "%.1f", $0["snr_db"] as? Double ?? .nan))" }.joined(separator: " "))
            }
        }
        try ResultsFile.write(name, records: records)
    }

    static func snr(_ w: [Float], n: Int, k: Int, scheme sc: SchemeCase) throws -> Double {
        let scheme: qk_scheme
        switch sc.scheme {
        case "f32": scheme = QK_F32
        case "bf16": scheme = QK_BF16
        case "f16": scheme = QK_F16
        case "q8": scheme = QK_Q8
        case "q4c": scheme = QK_Q4C
        case "q5s": scheme = QK_Q5S
        case "q6s": scheme = QK_Q6S
        case "q8s": scheme = QK_Q8S
        default: scheme = QK_Q4
        }
        let group = Int32(sc.group ?? (["q4c", "q8s", "q5s", "q6s"].contains(sc.scheme) ? 32 : 0))
        let bytes = qk_weight_bytes(scheme, group, Int64(n), Int64(k))
        guard bytes > 0 else { throw BenchError.bad("qk_weight_bytes: unsupported \(sc.name)") }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { buf.deallocate() }
        let rc = w.withUnsafeBufferPointer { qk_weight_pack_rows(scheme, group, Int64(n), Int64(k), 0, Int64(n), $0.baseAddress, buf) }
        guard rc == 0 else { throw BenchError.bad("qk_weight_pack_rows failed for \(sc.name) [\(n), \(k)]") }
        var wt = qk_weight(scheme: scheme, group: group, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(buf))
        var row = [Float](repeating: 0, count: k)
        var num = 0.0, den = 0.0
        for r in 0..<n {
            row.withUnsafeMutableBufferPointer { qk_weight_dequant_row(&wt, Int64(r), $0.baseAddress) }
            for j in 0..<k {
                let ref = Double(w[r * k + j]), d = Double(row[j]) - ref
                num += d * d; den += ref * ref
            }
        }
        return num > 0 ? 10 * log10(den / num) : .infinity
    }
}
