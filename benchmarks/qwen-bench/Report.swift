import ArgumentParser
import Foundation
import Quant

/// `qwen-bench report`: regenerates benchmarks/RESULTS.md, benchmarks/results/all.csv and
/// benchmarks/results/accuracy.svg from the recorded results files. Numbers only ever come from those
/// files; a missing file or a failed case is said as such.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Regenerate benchmarks/RESULTS.md, results/all.csv and results/accuracy.svg from the recorded runs.",
        discussion: """
        Examples:
          qwen-bench report
          qwen-bench report --results benchmarks/results --out benchmarks/RESULTS.md
        """)

    @Option(name: .long, help: "Folder of the recorded results (*.json).")
    var results = Paths.results.path

    @Option(name: .long, help: "Markdown report to write.")
    var out = Paths.repo.appendingPathComponent("benchmarks/RESULTS.md").path

    func run() throws {
        let dir = URL(fileURLWithPath: results)
        let data = ReportData(dir: dir)
        var md = ReportWriter(data: data)
        let text = md.render()
        try AtomicWrite.data(text.data(using: .utf8)!, to: URL(fileURLWithPath: out))
        let csv = CSVExport.render(data)
        try AtomicWrite.data(csv.data(using: .utf8)!, to: dir.appendingPathComponent("all.csv"))
        let svg = AccuracyPlot.render(data)
        try AtomicWrite.data(svg.data(using: .utf8)!, to: dir.appendingPathComponent("accuracy.svg"))
        note("wrote \(out), \(dir.path)/all.csv, \(dir.path)/accuracy.svg")
    }
}

/// Every results file, loaded once.
struct ReportData {
    let files: [String: [String: Any]]
    let dir: URL

    init(dir: URL) {
        self.dir = dir
        var f: [String: [String: Any]] = [:]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for n in names.sorted() where n.hasSuffix(".json") {
            if let o = try? readJSON(dir.appendingPathComponent(n)) { f[String(n.dropLast(5))] = o }
        }
        files = f
    }

    func records(_ name: String) -> [[String: Any]] { files[name]?["records"] as? [[String: Any]] ?? [] }
    func has(_ name: String) -> Bool { files[name] != nil }
    /// `base` and every `base_*` results file that has records, in name order (one report table each).
    func family(_ base: String) -> [String] {
        files.keys.filter { ($0 == base || $0.hasPrefix(base + "_")) && !records($0).isEmpty }.sorted()
    }

    /// Full-size bits per weight of a component ("text_encoder" / "vae") for a scheme, from convert.json.
    func fullSizeBits(case c: String, component: String) -> Double? {
        for r in records("convert_sizes") where r["case"] as? String == c {
            if let per = r["per_component"] as? [String: Any], let p = per[component] as? [String: Any],
               let b = p["bits_per_weight"] as? Double { return b }
        }
        for r in records("convert") where r["case"] as? String == c {
            if let per = r["per_component"] as? [String: Any], let p = per[component] as? [String: Any],
               let b = p["bits_per_weight"] as? Double { return b }
        }
        for r in records("convert_vae") where r["case"] as? String == c {
            if let per = r["per_component"] as? [String: Any], let p = per[component] as? [String: Any],
               let b = p["bits_per_weight"] as? Double { return b }
        }
        return nil
    }
}

// MARK: - Formatting

enum F {
    /// A number from a results file ("inf"/"nan" strings stand for non-finite values).
    static func double(_ v: Any?) -> Double? {
        if let d = v as? Double { return d }
        if let i = v as? Int { return Double(i) }
        switch v as? String { case "inf": return .infinity; case "-inf": return -.infinity; case "nan": return .nan; default: return nil }
    }
    static func sci(_ v: Any?) -> String {
        guard let d = double(v) else { return "–" }
        if d.isInfinite { return "∞" }
        if d == 0 { return "0" }
        return String(format: "%.2e", d)
    }
    static func num(_ v: Any?, _ digits: Int = 2) -> String {
        guard let d = double(v) else { return "–" }
        if d.isInfinite { return "∞" }
        return String(format: "%.\(digits)f", d)
    }
    static func cos(_ v: Any?) -> String {
        guard let d = v as? Double else { return "–" }
        return String(format: "%.6f", d)
    }
    static func gib(_ v: Any?) -> String {
        guard let b = (v as? Int) ?? (v as? Double).map({ Int($0) }) else { return "–" }
        return ByteSize.format(b)
    }
    static func secs(_ v: Any?) -> String {
        guard let d = v as? Double else { return "–" }
        return d >= 100 ? String(format: "%.0f s", d) : d >= 10 ? String(format: "%.1f s", d) : String(format: "%.2f s", d)
    }
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var s = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for r in rows { s += "| " + r.joined(separator: " | ") + " |\n" }
        return s
    }
}
