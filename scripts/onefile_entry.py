"""Entry point of the one-file build (`scripts/build-onefile.sh`): the `appliance` command, and the
hidden `appliance __worker ...` and `__batch ...`, which run the scoring worker and the batch worker
(`python -m appliance.scoring` and `python -m appliance.scoring.batch` in a normal install): in a
frozen binary `sys.executable` is the binary itself, so that is how the daemon starts a `process`
worker and a batch job's workers (see appliance.runtime.process.worker_command)."""

import sys

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "__worker":
        from appliance.scoring.__main__ import main as worker

        sys.exit(worker(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "__batch":
        from appliance.scoring.batch import main as batch_worker

        sys.exit(batch_worker(sys.argv[2:]))
    from appliance.cli.main import main

    sys.exit(main())
