// Test-only helpers over the testbed that `scripts/testbed up` starts on loopback: where its
// services are (env.json), skipping or failing when one is missing, SLURM's environment,
// sshd fault helpers and free ports. Consumed as TypeScript source by vitest: no build.

export { countingTransport } from './counting-transport.js';
export { freePort, type WaitForPortOptions, waitForPort, waitForPortClosed } from './net.js';
export { type TestbedSshConnection, testbedSshTransport } from './ssh-transport.js';
export {
  type PrivateSshd,
  type PrivateSshdOptions,
  privateSshd,
  restartSshd,
  SshdController,
  type SshdControllerOptions,
  type StartSshdOptions,
  type StopSshdOptions,
  type SuspendedSshdConnections,
  sshdConnectionProcesses,
  startSshd,
  stopSshd,
  suspendSshdConnections,
  testbedSshd,
} from './sshd.js';
export {
  isCI,
  loadTestbed,
  type PostgresService,
  requireService,
  type ServiceName,
  type SgeService,
  type SlurmService,
  type SshService,
  sgeEnv,
  slurmEnv,
  type Testbed,
  type TestbedServices,
  testbedDir,
} from './testbed.js';
