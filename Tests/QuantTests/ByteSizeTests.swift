import Testing
@testable import Quant

/// `ByteSize.parse` (the --max-ram values), a Quant support type: tested with Quant.
@Test func byteSizeParses() {
    #expect(ByteSize.parse("1G") == 1 << 30)
    #expect(ByteSize.parse("512MiB") == 512 << 20)
    #expect(ByteSize.parse("x") == nil)
}
