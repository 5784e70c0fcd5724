"""The job runner: every worker job runs as a child process, supervised and recorded the same way.

child: spawn and supervise one child process, its stdout read as reports. runner: the loop every job kind shares
(prepare → spawn → read reports → relay cancel → conclude). outcome: the pure rule from what was seen to the end
state. training: the training job kind, with inputs (what its child is given) and recorder (what it reports,
stored in the database and published to Redis).
"""
