// qwen-fuzz: libFuzzer harnesses over `ParserHarness` (one per parser of untrusted input).
//
// Normal builds make a corpus replayer:  qwen-fuzz HARNESS FILE_OR_FOLDER...
// Fuzzing builds (Tests/fuzz/run.sh):    swift build -c release --product qwen-fuzz --scratch-path .build-fuzz \
//                                          -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
//                                        QWEN_FUZZ_TARGET=HARNESS .build-fuzz/release/qwen-fuzz CORPUS/ -dict=...
import Foundation
import QwenImage

#if FUZZING
private let harness: ParserHarness = {
    let name = ProcessInfo.processInfo.environment["QWEN_FUZZ_TARGET"] ?? ""
    guard let h = ParserHarness(rawValue: name) else {
        FileHandle.standardError.write(Data("QWEN_FUZZ_TARGET must be one of: \(ParserHarness.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return h
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    harness.run(Data(bytes: data, count: size))
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main` (it renames main for testing), so
// libFuzzer's own main is not the one that runs: start its driver from ours.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@_cdecl("qwen_fuzz_main")
public func qwenFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzOneInput)
}
#else
@main
struct QwenFuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.count == 2 && args[0] == "--write-pack-seeds" {
            // The harness's fixed valid component manifest and shard, as corpus seeds (make_seeds.sh).
            let dir = URL(fileURLWithPath: args[1])
            try! ParserHarness.fixedManifestSeed.write(to: dir.appendingPathComponent("componentManifest/seed-manifest.json"))
            try! ParserHarness.fixedShardSeed.write(to: dir.appendingPathComponent("shard/seed.qwshard"))
            return
        }
        guard let first = args.first, let harness = ParserHarness(rawValue: first), args.count >= 2 else {
            print("usage: qwen-fuzz HARNESS FILE_OR_FOLDER...   (harnesses: \(ParserHarness.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(64)
        }
        var files: [String] = []
        for a in args.dropFirst() {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: a, isDirectory: &isDir), isDir.boolValue {
                files += ((try? FileManager.default.contentsOfDirectory(atPath: a)) ?? []).sorted().map { a + "/" + $0 }
            } else {
                files.append(a)
            }
        }
        var rejected = 0
        for f in files {
            guard let d = FileManager.default.contents(atPath: f) else { continue }
            if harness.run(d) != nil { rejected += 1 }
        }
        print("\(harness.rawValue): \(files.count) inputs replayed, \(files.count - rejected) accepted, \(rejected) rejected with an error")
    }
}
#endif
