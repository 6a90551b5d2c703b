import Testing
@testable import QwenImage

/// `HelpText.reflow`: prose paragraphs become one line each; examples, lists and blank lines stay put.
@Suite struct HelpTextTests {
    @Test func joinsProseKeepsIndentedLinesAndParagraphs() {
        let text = """
        First line of a paragraph
        and its second line.
        --rule starts a new paragraph
        that goes on here.

        Examples:
          qwen-run encode --pack p/
          qwen-run vision --pack p/
        After a list, a new paragraph
        continues.
        """
        #expect(HelpText.reflow(text) == """
        First line of a paragraph and its second line.
        --rule starts a new paragraph that goes on here.

        Examples:
          qwen-run encode --pack p/
          qwen-run vision --pack p/
        After a list, a new paragraph continues.
        """)
    }

    @Test func colonEndsAParagraphLine() {
        #expect(HelpText.reflow("Presets (see below):\nq8: everything") == "Presets (see below):\nq8: everything")
        #expect(HelpText.reflow("") == "")
    }
}
