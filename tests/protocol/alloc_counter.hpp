// Global allocation counter for tests (alloc_counter.cpp replaces operator new).
//
// The count covers every thread; read it around code that runs on one thread only.
#pragma once

long dbmgr_test_allocations();
