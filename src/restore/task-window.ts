/**
 * Runs tasks several at a time as one producer hands them over (unpack's files: their open/write/rename round trips
 * overlap): at most `maxRunning` at once and at most `maxWeight` of weight (bytes a task may hold in memory) in
 * flight, a task heavier than that alone. The first error stops new work: add() then returns false, and finish()
 * throws it once the running tasks are done, so no task is left half done.
 */
export class TaskWindow {
  readonly #maxRunning: number
  readonly #maxWeight: number
  #running = 0
  #weight = 0
  #failure: { err: unknown } | undefined
  /** The producer, waiting for room (there is one producer: add and finish are not called concurrently). */
  #wake: (() => void) | null = null

  constructor (maxRunning: number, maxWeight: number) {
    this.#maxRunning = maxRunning
    this.#maxWeight = maxWeight
  }

  /** Starts `task` once there is room; false (and `task` not run) when an earlier task failed. */
  async add (weight: number, task: () => Promise<void>): Promise<boolean> {
    while (this.#failure === undefined && this.#running > 0 &&
           (this.#running >= this.#maxRunning || this.#weight + weight > this.#maxWeight)) {
      await new Promise<void>((resolve) => { this.#wake = resolve })
    }
    if (this.#failure !== undefined) return false
    this.#running++
    this.#weight += weight
    task().catch((err: unknown) => { this.#failure ??= { err } }).finally(() => {
      this.#running--
      this.#weight -= weight
      const wake = this.#wake
      this.#wake = null
      wake?.()
    })
    return true
  }

  /** Waits for the running tasks; throws the first error any task threw. */
  async finish (): Promise<void> {
    while (this.#running > 0) await new Promise<void>((resolve) => { this.#wake = resolve })
    if (this.#failure !== undefined) throw this.#failure.err
  }
}
