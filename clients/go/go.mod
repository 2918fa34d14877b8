module github.com/mini-llm/mini-llm/clients/go

go 1.19
