import Foundation
import Testing
@testable import Quant

/// Fixture and temporary-folder helpers shared by the Quant tests.
enum Fixtures {
    static let root: URL = {
        var u = URL(fileURLWithPath: #filePath)
        while u.lastPathComponent != "Tests" { u.deleteLastPathComponent() }
        return u.appendingPathComponent("Fixtures")
    }()
    static let tinyModel = root.appendingPathComponent("tiny-random-qwen-image")
}

/// A fresh temporary folder, removed by `cleanup()`.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("quant-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
    deinit { cleanup() }
}

/// A safetensors file with a hand-written header (for corrupt-input tests).
func rawSafetensors(header: String, data: Data, headerLength: UInt64? = nil) -> Data {
    let h = header.data(using: .utf8)!
    var n = (headerLength ?? UInt64(h.count)).littleEndian
    var out = Data()
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    out.append(h)
    out.append(data)
    return out
}

/// Copies the tiny model to a temporary folder (to corrupt it).
func copyTinyModel(into dir: TempDir) throws -> URL {
    let dst = dir.url.appendingPathComponent("model")
    try FileManager.default.copyItem(at: Fixtures.tinyModel, to: dst)
    return dst
}

/// The error message of a throwing expression, or nil when it did not throw.
func errorText(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return "\(error)" }
}
