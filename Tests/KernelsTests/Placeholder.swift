import Testing
import Quant
@Test func byteSizeParses() {
    #expect(ByteSize.parse("1G") == 1 << 30)
    #expect(ByteSize.parse("512MiB") == 512 << 20)
    #expect(ByteSize.parse("x") == nil)
}
