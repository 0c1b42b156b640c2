import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * Starts `server` listening on 127.0.0.1 only, on a free port. Its close ends the connections still open too (a
 * stalled answer, a tunnel), so a test never waits on them.
 */
export async function listenOnLoopback (server: Server): Promise<{ port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
