/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-proc.h — what the service and the client read about a process from /proc: its start time
 * (which, with the pid, names one process across pid reuse, as polkit's unix-process subject
 * does) and its effective uid.  One parser for both sides (private, not installed).
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/**
 * ia_proc_parse_start_time() - the start time in the text of /proc/PID/stat
 * @stat: the file's contents, NUL-terminated
 * @ret: on success, field 22 (starttime, clock ticks since boot; proc(5) counts from 1)
 *
 * The command name (field 2) may hold spaces and parentheses: fields are counted from the
 * last ')'.
 *
 * Return: 0, or -EIO when the text does not have 22 fields.
 */
int ia_proc_parse_start_time(const char *stat, uint64_t *ret);

/**
 * ia_proc_get_start_time() - field 22 of /proc/@pid/stat
 * @pid: the process
 * @ret: on success, its start time
 *
 * Return: 0, -ESRCH if there is no such process, -EIO for a text that does not parse, or
 * another negative errno from reading the file.
 */
int ia_proc_get_start_time(pid_t pid, uint64_t *ret);

/**
 * ia_proc_get_euid() - the effective uid in /proc/@pid/status
 * @pid: the process
 * @ret: on success, the second number of its "Uid:" line
 *
 * Return: 0, -ESRCH if there is no such process, -EIO without a "Uid:" line, or another
 * negative errno from reading the file.
 */
int ia_proc_get_euid(pid_t pid, uid_t *ret);
