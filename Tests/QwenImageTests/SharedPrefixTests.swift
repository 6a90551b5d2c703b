import Foundation
import Quant
import Testing
@testable import QwenImage

/// The template's dropped prefix computed once (`SharedPrefix`) gives the same embeddings as every
/// prompt running through its own template rows; the upstream parity tests (TextEncoderTests) run with
/// it on, since it is the default.
@Suite("Shared template prefix")
struct SharedPrefixTests {
    static let prompts = [
        "A cat sitting on a red sofa",
        "a much longer prompt about a small red fox sitting in the snow at dawn, 35mm film, soft light",
        "x",
        "\nstarts with a newline",
        "一只在雪地里的红狐狸",
    ]

    func encode(_ scheme: String, share: Bool, calls: [[String]]) throws -> ([PromptEmbeddings], [Int]) {
        let path = try TextEncoderFixtures.pack(scheme)
        let encoder = try PromptEncoder(pack: try Pack(path: path), packPath: path)
        encoder.sharesTemplatePrefix = share
        var out: [PromptEmbeddings] = [], saved: [Int] = []
        for prompts in calls {
            out.append(try encoder.encode([prompts])[0])
            saved.append(encoder.lastRowsSaved)
        }
        return (out, saved)
    }

    @Test(arguments: ["f32", "q8", "q4"])
    func sameEmbeddingsWithAndWithoutTheSharedPrefix(scheme: String) throws {
        // Two calls: the first computes the prefix within its pass, the second reuses it.
        let calls = [Self.prompts, Array(Self.prompts.reversed().prefix(3))]
        let (plain, none) = try encode(scheme, share: false, calls: calls)
        let (shared, saved) = try encode(scheme, share: true, calls: calls)
        #expect(none == [0, 0])
        for (a, b) in zip(plain, shared) {
            #expect(a.mask == b.mask && a.length == b.length)
            let e = TextEncoderFixtures.relL2(b.embeds, a.embeds)
            #expect(e <= Tolerances.textBatchVsSingleRelL2, "\(scheme): shared prefix vs own template rows, rel L2 \(e)")
        }
        // Every prompt whose tokens start with the template's skipped its rows.
        let drop = PromptTemplate.textToImage.dropIndex
        #expect(saved[0] >= drop * (Self.prompts.count - 1) && saved[1] >= drop * 2, "rows saved: \(saved)")
    }

    @Test func aSequenceAfterAMissingPrefixIsRefused() throws {
        let path = try TextEncoderFixtures.pack("f32")
        let model = try LanguageModel(pack: try Pack(path: path), packPath: path)
        let h = model.config.hiddenSize
        let seq = LMSequence(inputsEmbeds: [Float](repeating: 0.1, count: 2 * h), positions: .sequential(2, start: 3), afterPrefix: true)
        #expect(throws: QwenImageError.self) { try model.forward([seq]) }
    }
}
