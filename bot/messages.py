"""Every sentence a person reads, in one place (and so translatable)."""

EMPTY_QUESTION = "Ask me something: type your question after the command, e.g. `How do I request holidays?`"
NO_SOURCE = "No document matched this question, so this answer comes from the model alone."
INDEX_DOWN = "The document index is unavailable ({error}), so this answer comes from the model alone."
TRUNCATED = (
    "Your question was too long for the model: it was shortened (its middle was cut) "
    "to fit in {tokens} tokens. Ask about a shorter excerpt for a complete answer."
)
LLM_TIMEOUT = "the model did not answer within {seconds} seconds (it may be busy or down)"
LLM_UNREACHABLE = "the model server at {url} cannot be reached (it may be down or restarting)"
LLM_HTTP_ERROR = "the model server refused the request (HTTP {status}: {detail})"
MODEL_FAILED = "Sorry, I could not produce an answer: {error}. Please try again in a moment."
BASE_SYSTEM_PROMPT = (
    "You are Apprenti, the team's assistant. Answer the question accurately and concisely. "
    "If you do not know, say so."
)
RAG_INSTRUCTIONS = (
    "Answer from the numbered sources below when they are relevant, and cite them as [1], [2]. "
    "If the sources do not contain the answer, say so."
)
