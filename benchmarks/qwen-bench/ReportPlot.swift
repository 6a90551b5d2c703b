import Foundation

/// results/all.csv: every number of every results file, one per line:
/// file,case,item,metric,value (item = component / job / prompt length / tensor).
enum CSVExport {
    static func render(_ data: ReportData) -> String {
        var lines = ["file,case,item,metric,value"]
        func q(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        for file in data.files.keys.sorted() {
            for r in data.records(file) {
                let c = (r["case"] as? String) ?? ""
                var item = ""
                for k in ["component", "job", "input", "tensor"] { if let v = r[k] as? String { item = v } }
                if let n = r["prompt_tokens"] as? Int { item = "\(n) tokens" }
                if let src = r["source"] as? String, r["tensor"] != nil { item = src + ":" + item }
                func emit(_ prefix: String, _ v: Any) {
                    if let d = v as? [String: Any] { for k in d.keys.sorted() { emit(prefix.isEmpty ? k : prefix + "." + k, d[k]!) } }
                    else if let n = v as? NSNumber, String(cString: n.objCType) != "c" {
                        lines.append([file, c, item, prefix, n.stringValue].map(q).joined(separator: ","))
                    }
                }
                for k in r.keys.sorted() where !["case", "component", "job", "input", "tensor", "source", "prompt_tokens"].contains(k) {
                    if k == "wall_s_all" || k == "shape" { continue }
                    emit(k, r[k]!)
                }
                if let n = r["prompt_tokens"] as? Int { lines.append([file, c, item, "prompt_tokens", String(n)].map(q).joined(separator: ",")) }
            }
            // Scalars at the top level of a file (limits.json).
            for k in data.files[file]!.keys.sorted() where !["records", "date", "machine", "command", "bench"].contains(k) {
                func emit(_ prefix: String, _ v: Any) {
                    if let d = v as? [String: Any] { for kk in d.keys.sorted() { emit(prefix + "." + kk, d[kk]!) } }
                    else if let n = v as? NSNumber, String(cString: n.objCType) != "c" { lines.append([file, "", "", prefix, n.stringValue].map(q).joined(separator: ",")) }
                }
                emit(k, data.files[file]![k]!)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// results/accuracy.svg: relative L2 error against the baseline pack vs bits per weight, one series
/// per component (log-log axes), hand-written SVG.
enum AccuracyPlot {
    struct Series { let label: String; let color: String; let dashed: Bool; var points: [(x: Double, y: Double, tag: String)] }

    static func series(_ data: ReportData) -> [Series] {
        var out: [Series] = []
        let colors = ["text": "#1f77b4", "edit": "#9467bd", "vision": "#ff7f0e", "vae-encode": "#2ca02c", "vae-decode": "#d62728"]
        let compFolder = ["text": "text_encoder", "edit": "text_encoder", "vision": "text_encoder", "vae-encode": "vae", "vae-decode": "vae"]
        func add(_ file: String, labelSuffix: String, dashed: Bool) {
            let recs = data.records(file)
            let base = data.files[file]?["baseline"] as? String ?? "f32"
            for comp in ["text", "edit", "vision", "vae-encode", "vae-decode"] {
                var pts: [(Double, Double, String)] = []
                for r in recs where r["component"] as? String == comp && r["status"] as? String == "ok" && (r["zstd"] as? Int ?? 0) == 0 {
                    guard let c = r["case"] as? String, let e = r["rel_l2_vs_\(base)"] as? Double, e > 0 else { continue }
                    let x = data.fullSizeBits(case: c, component: compFolder[comp]!) ?? (r["nominal_bits"] as? Double ?? .nan)
                    if x.isFinite { pts.append((x, e, c)) }
                }
                if !pts.isEmpty {
                    out.append(Series(label: comp + labelSuffix, color: colors[comp]!, dashed: dashed, points: pts.sorted { $0.0 < $1.0 }))
                }
            }
        }
        add("accuracy_tiny", labelSuffix: " (tiny, vs f32)", dashed: false)
        for f in data.files.keys.sorted() where f.hasPrefix("accuracy_synth") {
            add(f, labelSuffix: " (\(f.replacingOccurrences(of: "accuracy_", with: "")), vs \(data.files[f]?["baseline"] as? String ?? "bf16"))", dashed: true)
        }
        return out
    }

    static func render(_ data: ReportData) -> String {
        let W = 760.0, H = 470.0, L = 70.0, R = 230.0, T = 40.0, B = 60.0
        let pw = W - L - R, ph = H - T - B
        let all = series(data)
        let ys = all.flatMap { $0.points.map(\.y) }
        let ymin = floor(log10(ys.min() ?? 1e-6)), ymax = max(ceil(log10(ys.max() ?? 1)), ymin + 1)
        let xmin = log2(3.0), xmax = log2(36.0)
        func px(_ x: Double) -> Double { L + (log2(x) - xmin) / (xmax - xmin) * pw }
        func py(_ y: Double) -> Double { T + (ymax - log10(y)) / (ymax - ymin) * ph }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(W))" height="\(Int(H))" viewBox="0 0 \(Int(W)) \(Int(H))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(L)" y="22" font-size="15" font-weight="bold">Error vs bits per weight (relative L2 against the f32 / bf16 pack)</text>

        """
        // Grid and axes.
        for bits in [4.0, 5.0, 6.0, 8.0, 9.0, 12.0, 16.0, 24.0, 32.0] {
            let x = px(bits)
            s += "<line x1=\"\(x)\" y1=\"\(T)\" x2=\"\(x)\" y2=\"\(T + ph)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(x)\" y=\"\(T + ph + 18)\" text-anchor=\"middle\">\(Int(bits))</text>\n"
        }
        var e = ymin
        while e <= ymax {
            let y = py(pow(10, e))
            s += "<line x1=\"\(L)\" y1=\"\(y)\" x2=\"\(L + pw)\" y2=\"\(y)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(L - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">1e\(Int(e))</text>\n"
            e += 1
        }
        s += "<rect x=\"\(L)\" y=\"\(T)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(L + pw / 2)\" y=\"\(H - 18)\" text-anchor=\"middle\">bits per weight (full-size pack of that component; log scale)</text>\n"
        s += "<text x=\"18\" y=\"\(T + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(T + ph / 2))\">relative L2 error (log scale)</text>\n"
        if all.isEmpty {
            s += "<text x=\"\(L + pw / 2)\" y=\"\(T + ph / 2)\" text-anchor=\"middle\" fill=\"#888\">not measured yet</text>\n"
        }
        for (i, sr) in all.enumerated() {
            let dash = sr.dashed ? " stroke-dasharray=\"5,4\"" : ""
            let pts = sr.points.map { "\(px($0.x)),\(py($0.y))" }.joined(separator: " ")
            s += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(sr.color)\" stroke-width=\"1.6\"\(dash)/>\n"
            for p in sr.points {
                s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3.2\" fill=\"\(sr.color)\"><title>\(sr.label) \(p.tag): \(String(format: "%.3g", p.y)) at \(String(format: "%.2f", p.x)) bits</title></circle>\n"
            }
            let ly = T + 10 + Double(i) * 18
            s += "<line x1=\"\(L + pw + 14)\" y1=\"\(ly)\" x2=\"\(L + pw + 36)\" y2=\"\(ly)\" stroke=\"\(sr.color)\" stroke-width=\"2\"\(dash)/>"
            s += "<text x=\"\(L + pw + 42)\" y=\"\(ly + 4)\" font-size=\"11\">\(sr.label)</text>\n"
        }
        // Scheme tags along the top of the text series (or the first one).
        if let first = all.first {
            for p in first.points {
                s += "<text x=\"\(px(p.x))\" y=\"\(py(p.y) - 8)\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">\(p.tag)</text>\n"
            }
        }
        s += "</svg>\n"
        return s
    }
}
