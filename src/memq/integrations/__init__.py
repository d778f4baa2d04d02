"""memq inside agent frameworks. Each module needs its framework, installed by a pip extra:

============================================  ==========================================  ===================
module                                        what it gives                               extra
============================================  ==========================================  ===================
:mod:`memq.integrations.langgraph`            ``MemqStore`` (a LangGraph ``BaseStore``),   ``memq[langgraph]``
                                              a feedback tool for LangGraph / LangMem
:mod:`memq.integrations.langchain`            ``MemqRetriever`` and remember / recall /    ``memq[langchain]``
                                              feedback tools
:mod:`memq.integrations.openai_agents`        ``MemqSession`` and function tools           ``memq[openai-agents]``
:mod:`memq.integrations.llamaindex`           ``MemqMemoryBlock`` and a feedback tool      ``memq[llamaindex]``
============================================  ==========================================  ===================

Importing :mod:`memq.integrations` itself imports no framework; importing one of the modules without
its extra raises an ``ImportError`` that names the extra. The mem0-compatible API is
:mod:`memq.compat.mem0` (no extra). Guide: ``docs/integrations.md``.
"""
