import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // CLI and FUSE tests spawn processes and mount filesystems: two cores, so two at once.
    maxWorkers: 2,
  },
})
