import Foundation

/// A one-line progress bar on stderr (only when stderr is a terminal, unless forced), with rate
/// and ETA. Thread-safe; redraws at most 10 times a second.
public final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let unit: Unit
    private let enabled: Bool
    /// Counts are shown divided by `scale` (work counted in finer steps than the items shown).
    private let scale: Int
    private let itemName: String
    private let start = Date()
    private var done = 0
    private var lastDraw = Date.distantPast
    private let lock = NSLock()

    public enum Unit: Sendable { case items, bytes }

    /// - Parameters:
    ///   - scale: `total` and `advance` count in units of 1/scale item (for example layers of a prompt).
    ///   - itemName: shown after the item counts ("prompts": "12/100 prompts 3.4 prompts/s").
    public init(_ label: String, total: Int, unit: Unit = .items, scale: Int = 1, itemName: String = "",
                enabled: Bool? = nil) {
        self.label = label
        self.scale = max(1, scale)
        self.itemName = itemName
        self.total = max(total, 0)
        self.unit = unit
        self.enabled = enabled ?? (isatty(2) != 0 && ProcessInfo.processInfo.environment["QWEN_NO_PROGRESS"] == nil)
    }

    public func advance(_ by: Int = 1, note: String = "") {
        lock.lock(); defer { lock.unlock() }
        done += by
        guard enabled else { return }
        let now = Date()
        if now.timeIntervalSince(lastDraw) < 0.1 && done < total { return }
        lastDraw = now
        draw(note: note, now: now)
    }

    public func finish() {
        lock.lock(); defer { lock.unlock() }
        guard enabled else { return }
        draw(note: "", now: Date())
        FileHandle.standardError.write("\n".data(using: .utf8)!)
    }

    private func draw(note: String, now: Date) {
        let frac = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 28
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 && total > done ? Double(total - done) / rate : 0
        let counts: String
        switch unit {
        case .items:
            let name = itemName.isEmpty ? "" : " " + itemName
            let shown = scale == 1 ? "\(done)" : String(format: "%.1f", Double(done) / Double(scale))
            counts = "\(shown)/\(total / scale)\(name) \(String(format: "%.1f", rate / Double(scale)))\(name)/s"
        case .bytes: counts = "\(ByteSize.format(done))/\(ByteSize.format(total)) \(ByteSize.format(Int(rate)))/s"
        }
        let line = "\r\(label) \(bar) \(Int(frac * 100))% \(counts) ETA \(Int(eta))s \(note)\u{1B}[K"
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }
}
