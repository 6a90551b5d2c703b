import Foundation
import Testing
@testable import QwenImage

/// Replays every committed fuzz input (seeds and regression findings, `Tests/Fixtures/fuzz/HARNESS/`)
/// through its parser, as `.ci/run` must: an input that crashes or hangs a parser fails the suite.
/// The fuzzing itself is `Tests/fuzz/run.sh` (not part of CI).
@Suite struct FuzzCorpusTests {
    static let corpus: URL = {
        var u = URL(fileURLWithPath: #filePath)
        while u.lastPathComponent != "Tests" { u.deleteLastPathComponent() }
        return u.appendingPathComponent("Fixtures/fuzz")
    }()

    @Test(arguments: ParserHarness.allCases)
    func corpusReplays(_ harness: ParserHarness) throws {
        let dir = Self.corpus.appendingPathComponent(harness.rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!names.isEmpty, "no corpus for \(harness.rawValue)")
        var accepted = 0
        for n in names {
            let data = try Data(contentsOf: dir.appendingPathComponent(n))
            if harness.run(data) == nil { accepted += 1 }
        }
        // Every corpus holds at least one valid seed, so a parser that rejects everything is caught too.
        #expect(accepted > 0, "\(harness.rawValue): no input of \(names.count) was accepted")
    }
}
