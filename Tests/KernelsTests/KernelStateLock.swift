import Foundation

/// The thread count and the forced tier are process-wide, and Swift Testing runs suites in parallel:
/// every test that changes either holds this lock for its whole body, so no test sees another's setting.
private let kernelStateLock = NSRecursiveLock()

func withKernelState<T>(_ body: () throws -> T) rethrows -> T {
    kernelStateLock.lock()
    defer { kernelStateLock.unlock() }
    return try body()
}
