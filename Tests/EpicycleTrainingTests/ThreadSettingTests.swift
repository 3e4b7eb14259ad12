import EpicycleRuntime
@testable import EpicycleTraining
import Testing

/// `threads:` sets every pool a run uses: the kernels', OpenBLAS's, and the loader's (none: batches
/// are prepared on the training thread). A comparison's share of the cores caps it.
@Suite(.serialized) struct ThreadSettingTests {
    static func recipe(threads: Int?) throws -> RecipeSource {
        try RecipeSource(text: """
            model: {architecture: resnet8}
            \(threads.map { "threads: \($0)" } ?? "")
            pretrain:
              data: {first: 100, validation: 100}
              epochs: 1
            """, origin: "threads.yaml")
    }

    /// The threads a prepared recipe leaves the runtime with (kernels, BLAS) and its loader's workers.
    static func pools(threads: Int?, limit: Int? = nil) throws -> (kernels: Int, blas: Int, loaderWorkers: Int) {
        let prepared = try PreparedRecipe(try recipe(threads: threads), options: RunOptions(threadLimit: limit))
        return (kernelThreads, blasThreads, try #require(prepared.pretrainData).trainingLoader(seed: 0).workerCount)
    }

    @Test func threadsReachEveryPool() throws {
        let (kernels, blas) = (kernelThreads, blasThreads)
        defer { setKernelThreads(kernels); setBLASThreads(blas) }
        let cores = onlineProcessorCount
        // Never more threads than cores here: that would change the reduction parts (`reductionParts`)
        // of runs that other suites have in progress in this process, and their bit-identity checks.
        #expect(try Self.pools(threads: 1) == (1, 1, 0))
        // Without `threads:` a run takes every core, also after a run that asked for fewer in this process.
        #expect(try Self.pools(threads: nil) == (cores, cores, 0))
        // A comparison's share caps the recipe's threads; the recipe may ask for fewer.
        #expect(try Self.pools(threads: nil, limit: 1) == (1, 1, 0))
        #expect(try Self.pools(threads: 4, limit: 2) == (2, 2, 0))
        #expect(try Self.pools(threads: 1, limit: 2) == (1, 1, 0))
    }
}
