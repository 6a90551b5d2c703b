import ArgumentParser
import Foundation
import Kernels
import Quant
import QwenImage

/// Writes a line to stderr.
func note(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// Runs a command body; library errors become `error: ...` on stderr and exit code 1.
func runReportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as QuantError {
        note("error: \(e.description)"); throw ExitCode(1)
    } catch let e as QwenImageError {
        note("error: \(e.description)"); throw ExitCode(1)
    }
}

func applyThreads(_ threads: Int?) throws -> Int {
    if let t = threads {
        guard t >= 1 && t <= 1024 else { throw ValidationError("--threads must be between 1 and 1024, got \(t)") }
        qk_set_threads(Int32(t))
        return t
    }
    return ProcessInfo.processInfo.activeProcessorCount
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
func shapeText(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
func rmseText(_ x: Double) -> String { x == 0 ? "0" : String(format: "%.3e", x) }
