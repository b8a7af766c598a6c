// Worker-thread bootstrap: the project runs TypeScript through tsx without a build step, and a worker
// thread does not inherit a loader registered through the API, so register it here, then load the worker.
import { register } from 'tsx/esm/api';

register();
await import('./render-worker.ts');
