"""Python client for the longrun job API: submit, wait, read results, cancel, list, replay.

```python
from longrun_client import LongrunClient

with LongrunClient("http://127.0.0.1:7071") as client:
    job = client.submit("vector-normalize", input={"vector_data": [[3, 4]]}).wait(timeout=60)
    print(job.status, job.result()["vectors"])
```
"""

from longrun_client.aio import AsyncJob, AsyncLongrunClient
from longrun_client.errors import ConnectionFailed, FieldError, LongrunError, ProblemError, WaitTimeout
from longrun_client.models import DeadLetter, Health, JobError, JobSnapshot, JobStatus, Progress, UploadTicket
from longrun_client.retry import RetryPolicy
from longrun_client.sync import Job, LongrunClient

__all__ = [
    "AsyncJob",
    "AsyncLongrunClient",
    "ConnectionFailed",
    "DeadLetter",
    "FieldError",
    "Health",
    "Job",
    "JobError",
    "JobSnapshot",
    "JobStatus",
    "LongrunClient",
    "LongrunError",
    "ProblemError",
    "Progress",
    "RetryPolicy",
    "UploadTicket",
    "WaitTimeout",
]
